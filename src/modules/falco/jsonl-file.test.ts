import { appendFileSync, renameSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { falcoConfig, silent, store, tmp, type Store } from '../../../test/falco/helpers.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { JsonlFollower } from './jsonl-file.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
let seq = 0;
/** Distinct events (unique pod each) so every line is one outbox row and can be told apart. */
function lines(n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    const ev = scenarioEvent(0);
    ev.output_fields['k8s.pod.name'] = `pod-${seq++}`;
    out += `${toFalcoJson(ev)}\n`;
  }
  return out;
}

function follower(s: Store, path: string, startAt: 'beginning' | 'end' = 'beginning') {
  const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
  return new JsonlFollower({ path, startAt, pollIntervalMs: 20, db: s.db, sink, builder, log: silent, signal: new AbortController().signal });
}

function pods(s: Store): string[] {
  return s.outbox.read(0, 1e6).map((r) => (JSON.parse(r.payload.toString()) as { labels: { pod: string } }).labels.pod);
}

describe('JSON lines file input', () => {
  it('reads appended lines, waits for a partial line, and resumes after a restart without re-reading', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, lines(3));
    let s = store(join(dir, 'data'));
    let f = follower(s, path);
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1', 'pod-2']);
    const next = lines(2);
    appendFileSync(path, next.slice(0, next.length - 20));
    await f.step();
    expect(s.outbox.size).toBe(4);
    appendFileSync(path, next.slice(next.length - 20));
    await f.step();
    expect(s.outbox.size).toBe(5);
    s.db.close();

    s = store(join(dir, 'data'));
    f = follower(s, path);
    await f.step();
    expect(s.outbox.size).toBe(5);
    appendFileSync(path, lines(1));
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4', 'pod-5']);
  });

  it('follows rename + create rotation, finishing the old file first', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, lines(2));
    const s = store(join(dir, 'data'));
    const f = follower(s, path);
    await f.step();
    appendFileSync(path, lines(2));
    renameSync(path, `${path}.1`);
    writeFileSync(path, lines(2));
    await f.step();
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4', 'pod-5']);
  });

  it('finds the rotated file after a restart and reads its rest before the new file', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, lines(2));
    let s = store(join(dir, 'data'));
    await follower(s, path).step();
    s.db.close();
    // While the agent is down: more events, then logrotate.
    appendFileSync(path, lines(1));
    renameSync(path, `${path}.1`);
    writeFileSync(path, lines(1));
    s = store(join(dir, 'data'));
    const f = follower(s, path);
    await f.step();
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3']);
  });

  it('notices copytruncate, also when the file grew past the old offset again', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, lines(3));
    const s = store(join(dir, 'data'));
    const f = follower(s, path);
    await f.step();
    truncateSync(path, 0);
    appendFileSync(path, lines(1));
    await f.step();
    expect(s.outbox.size).toBe(4);
    // Truncated and refilled beyond the offset between two reads.
    truncateSync(path, 0);
    appendFileSync(path, lines(5));
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4', 'pod-5', 'pod-6', 'pod-7', 'pod-8']);
  });

  it('starts at the end when told to, and skips lines that are not events', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, lines(3));
    const s = store(join(dir, 'data'));
    const f = follower(s, path, 'end');
    await f.step();
    expect(s.outbox.size).toBe(0);
    appendFileSync(path, `not json\n{"rule":"no time"}\n\n${lines(1)}`);
    await f.step();
    expect(pods(s)).toEqual(['pod-3']);
  });

  it('runs as a loop that waits for the file and stops on abort', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    const s = store(join(dir, 'data'));
    const abort = new AbortController();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const f = new JsonlFollower({ path, startAt: 'beginning', pollIntervalMs: 20, db: s.db, sink, builder, log: silent, signal: abort.signal });
    const done = f.run();
    await new Promise((r) => setTimeout(r, 50));
    writeFileSync(path, lines(2));
    const until = Date.now() + 10_000;
    while (s.outbox.size < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(s.outbox.size).toBe(2);
    abort.abort();
    await done;
  });

  it('skips a line over 1 MiB, also when storing the lines after it failed once', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    seq = 0;
    writeFileSync(path, `${lines(1)}${'x'.repeat(1536 * 1024)}\n${lines(1)}`);
    const s = store(join(dir, 'data'));
    let adds = 0;
    const adder = {
      add: (a: Parameters<typeof s.alerts.add>[0], w: number, t?: () => void) => {
        if (++adds === 2) throw new Error('disk full');
        s.alerts.add(a, w, t);
      },
    };
    const logged: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => logged.push(line) });
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 0, windowMs: 0, log });
    const f = new JsonlFollower({ path, startAt: 'beginning', pollIntervalMs: 20, db: s.db, sink, builder, log, signal: new AbortController().signal });
    await expect(f.step()).rejects.toThrow('disk full');
    await f.step();
    expect(pods(s)).toEqual(['pod-0', 'pod-1']);
    expect(logged.filter((l) => l.includes('longer than'))).toHaveLength(1);
    // The rest of the long line is not read as a line of its own.
    expect(logged.filter((l) => l.includes('not a Falco JSON event'))).toEqual([]);
  });
});
