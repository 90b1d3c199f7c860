import { appendFileSync, readdirSync, statSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tmp } from '../../../test/falco/helpers.js';
import { FileInbox, MemoryInbox, readInboxDir, type Inbox } from './inbox.js';

const bodies = (from: number, n: number) => Array.from({ length: n }, (_, i) => Buffer.from(`{"n":${from + i},"pad":"${'x'.repeat((from + i) % 300)}"}`));
const texts = (records: { body: Buffer }[]) => records.map((r) => (JSON.parse(r.body.toString()) as { n: number }).n);
const logs = (dir: string) =>
  readdirSync(dir)
    .filter((n) => n.startsWith('falco-inbox-'))
    .sort();

describe.each([
  ['FileInbox', () => new FileInbox(tmp(), { gen: 0, offset: 0 })],
  ['MemoryInbox', () => new MemoryInbox()],
] as const)('%s', (_name, make: () => Inbox) => {
  it('reads back what was appended, from any position, in order', () => {
    const inbox = make();
    const first = inbox.append(bodies(0, 3));
    inbox.append(bodies(3, 2));
    expect(texts(inbox.read({ gen: 0, offset: 0 }, 100))).toEqual([0, 1, 2, 3, 4]);
    const after = inbox.read(first, 100);
    expect(texts(after)).toEqual([3, 4]);
    expect(after[1]!.end).toEqual(inbox.end());
    expect(texts(inbox.read(first, 1))).toEqual([3]);
    inbox.release(first);
    expect(texts(inbox.read(first, 100))).toEqual([3, 4]);
    inbox.close();
  });
});

describe('FileInbox on disk', () => {
  it('continues in a new file after a restart and deletes consumed files once released', () => {
    const dir = tmp();
    let inbox = new FileInbox(dir, { gen: 0, offset: 0 });
    const a = inbox.append(bodies(0, 2));
    inbox.append(bodies(2, 2));
    inbox.close();
    // A restart that had recorded the first two as consumed.
    inbox = new FileInbox(dir, a);
    expect(texts(inbox.read(a, 100))).toEqual([2, 3]);
    const b = inbox.append(bodies(4, 1));
    expect(b.gen).toBe(a.gen + 1);
    expect(texts(inbox.read(a, 100))).toEqual([2, 3, 4]);
    expect(logs(dir)).toHaveLength(2);
    inbox.release(b);
    expect(logs(dir)).toEqual([`falco-inbox-${b.gen}.log`]);
    expect(readInboxDir(dir, b)).toEqual([]);
    inbox.close();
  });

  it('ignores a torn or zeroed tail: those events were never acknowledged', () => {
    const dir = tmp();
    const inbox = new FileInbox(dir, { gen: 0, offset: 0 });
    const end = inbox.append(bodies(0, 3));
    inbox.close();
    const file = join(dir, `falco-inbox-${end.gen}.log`);
    truncateSync(file, statSync(file).size - 5);
    expect(readInboxDir(dir).map((b) => (JSON.parse(b.toString()) as { n: number }).n)).toEqual([0, 1]);
    appendFileSync(file, Buffer.alloc(64));
    const again = new FileInbox(dir, { gen: 0, offset: 0 });
    expect(texts(again.read({ gen: 0, offset: 0 }, 100))).toEqual([0, 1]);
    again.append(bodies(3, 1));
    expect(texts(again.read({ gen: 0, offset: 0 }, 100))).toEqual([0, 1, 3]);
    again.close();
  });

  it('reads records larger than its read buffer and many small ones', () => {
    const dir = tmp();
    const inbox = new FileInbox(dir, { gen: 0, offset: 0 });
    const big = Buffer.from(JSON.stringify({ n: 0, pad: 'y'.repeat(3 * 1024 * 1024) }));
    inbox.append([big, ...bodies(1, 5000)]);
    const all = inbox.read({ gen: 0, offset: 0 }, 10_000);
    expect(all).toHaveLength(5001);
    expect(all[0]!.body.equals(big)).toBe(true);
    expect(texts(all.slice(1))).toEqual(Array.from({ length: 5000 }, (_, i) => i + 1));
    inbox.close();
  });

  it('has one owner per directory: a second one only after the first closed or died', () => {
    const dir = tmp();
    let alive = true;
    const first = new FileInbox(dir, { gen: 0, offset: 0 }, () => alive);
    expect(() => new FileInbox(dir, { gen: 0, offset: 0 })).toThrow(/already uses the inbox/);
    alive = false;
    const second = new FileInbox(dir, { gen: 0, offset: 0 });
    first.close();
    expect(() => new FileInbox(dir, { gen: 0, offset: 0 })).toThrow(/already uses the inbox/);
    second.close();
    new FileInbox(dir, { gen: 0, offset: 0 }).close();
  });
});
