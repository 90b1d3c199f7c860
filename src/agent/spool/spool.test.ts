import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ciliumPayload } from '../../server/store/test-payloads.js';
import { createRootLogger, type Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { openAgentDb } from './agent-db.js';
import { isSpoolFull, Spool, SpoolFullError } from './spool.js';

// The agent's durable spool: what is added survives a restart, only what is
// removed (acknowledged) goes, and the size bound refuses new alerts with a
// warning and a counter rather than growing without limit.

function capture(): { log: Logger; lines: { level: string; msg: string; [k: string]: unknown }[] } {
  const lines: { level: string; msg: string }[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as { level: string; msg: string });
      cb();
    },
  });
  return { log: createRootLogger({ level: 'info', destination: dest }), lines };
}

async function dropped(): Promise<number> {
  const m = await registry.getSingleMetric('verdict_agent_spool_dropped_total')!.get();
  return m.values[0]?.value ?? 0;
}

async function gauge(name: string): Promise<number> {
  return (await registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
}

const alerts = (n: number) => Array.from({ length: n }, (_, i) => ciliumPayload({ fp: `fp-${i}` }));

describe('Spool (the agent spool)', () => {
  it('keeps what was added across a restart, until it is removed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-spool-'));
    const { log } = capture();
    let db = openAgentDb(dir);
    let outbox = new Spool(db, { maxBytes: 1e9, log });
    expect(outbox.add(alerts(7))).toBe(7);
    const rows = outbox.read(0, 100);
    expect(rows).toHaveLength(7);
    expect(new Set(rows.map((r) => r.id)).size).toBe(7); // every alert event has its own id
    db.close();

    db = openAgentDb(dir);
    outbox = new Spool(db, { maxBytes: 1e9, log });
    expect(outbox.size).toBe(7);
    const again = outbox.read(0, 100);
    expect(again.map((r) => r.id)).toEqual(rows.map((r) => r.id));
    expect(JSON.parse(again[3]!.payload.toString('utf8'))).toMatchObject({ fingerprint: 'fp-3' });

    // Only the acknowledged rows go, even when they are not one range.
    outbox.remove([again[0]!, again[1]!, again[4]!]);
    expect(outbox.read(0, 100).map((r) => r.id)).toEqual([again[2]!.id, again[3]!.id, again[5]!.id, again[6]!.id]);
    expect(outbox.read(again[3]!.seq, 100).map((r) => r.id)).toEqual([again[5]!.id, again[6]!.id]);
    db.close();
    db = openAgentDb(dir);
    expect(new Spool(db, { maxBytes: 1e9, log }).size).toBe(4);
    db.close();
  });

  it('refuses alerts beyond --spool-max-bytes with one clear warning and a counter, and warns again after draining', async () => {
    const { log, lines } = capture();
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    const outbox = new Spool(db, { maxBytes: one * 3 + one / 2, log });
    const before = await dropped();
    expect(outbox.add(alerts(5))).toBe(3);
    expect(outbox.add(alerts(2))).toBe(0);
    expect(outbox.size).toBe(3);
    expect(await dropped()).toBe(before + 4);
    expect(await gauge('verdict_agent_spool_alerts')).toBe(3);
    const warnings = lines.filter((l) => l.msg.startsWith('Alert spool is full'));
    expect(warnings).toHaveLength(1); // once, not once per refused alert
    expect(warnings[0]).toMatchObject({ level: 'warn', max_bytes: one * 3 + one / 2 });
    expect(warnings[0]!.msg).toMatch(
      /new alerts are dropped until the server acknowledges queued ones; check the connection to the server or raise --spool-max-bytes/,
    );

    // The server acknowledges everything: room again, and the next overflow is reported again.
    outbox.remove(outbox.read(0, 10));
    expect(outbox.size).toBe(0);
    expect(outbox.add(alerts(4))).toBe(3);
    expect(lines.filter((l) => l.msg.startsWith('Alert spool is full'))).toHaveLength(2);
    expect(await dropped()).toBe(before + 5);
    db.close();
  });

  it("for a source that waits ('refuse'): takes a write whole while not full, then refuses whole writes, dropping nothing, until under 90% again", async () => {
    const { log, lines } = capture();
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    const outbox = new Spool(db, { maxBytes: one * 10, log });
    const before = await dropped();
    let room = 0;
    outbox.onRoom(() => room++);
    expect(outbox.add(alerts(6), 'refuse')).toBe(6);
    expect(outbox.full).toBe(false);
    // Not full yet: taken whole, past the bound, rather than held up for ever by a write that never fits.
    expect(outbox.add(alerts(6), 'refuse')).toBe(6);
    expect(outbox.size).toBe(12);
    expect(outbox.full).toBe(true);
    expect(await gauge('verdict_agent_spool_full')).toBe(1);
    let refused: unknown;
    try {
      outbox.add(alerts(1), 'refuse');
    } catch (e) {
      refused = e;
    }
    expect(refused).toBeInstanceOf(SpoolFullError);
    expect(isSpoolFull(refused)).toBe(true);
    expect((refused as Error).message).toMatch(/alert spool is full: the server has not acknowledged .*raise --spool-max-bytes/);
    expect(outbox.size).toBe(12);
    // Sources that do not wait still drop what does not fit, as before.
    expect(outbox.add(alerts(1))).toBe(0);
    expect(await dropped()).toBe(before + 1);

    // Acknowledged down to 90% of the bound: still full (sources pause and resume in episodes).
    outbox.remove(outbox.read(0, 3));
    expect(outbox.size).toBe(9);
    expect(outbox.full).toBe(true);
    expect(room).toBe(0);
    expect(() => outbox.add(alerts(1), 'refuse')).toThrow(SpoolFullError);
    outbox.remove(outbox.read(0, 1));
    expect(outbox.full).toBe(false);
    expect(room).toBe(1);
    expect(await gauge('verdict_agent_spool_full')).toBe(0);
    expect(outbox.add(alerts(1), 'refuse')).toBe(1);
    // The spool's own warning is about dropping; refusing is the waiting source's to log.
    expect(lines.filter((l) => l.msg.startsWith('Alert spool is full'))).toHaveLength(1);
    expect(await dropped()).toBe(before + 1);
    db.close();
  });

  it("for a source that drops ('drop'): a drop makes the spool full, and it keeps dropping until under 90%, so sources that wait get the room too", async () => {
    const { log } = capture();
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    // Room for 19.5 alerts: filled by drops alone, it never reaches the bound itself.
    const outbox = new Spool(db, { maxBytes: one * 19 + one / 2, log });
    let room = 0;
    outbox.onRoom(() => room++);
    const before = await dropped();
    expect(outbox.add(alerts(20))).toBe(19);
    expect(outbox.full).toBe(true);
    expect(await gauge('verdict_agent_spool_full')).toBe(1);
    expect(() => outbox.add(alerts(1), 'refuse')).toThrow(SpoolFullError);
    // One acknowledged leaves 18 (above 90%): still full for every source, Cilium's drops included.
    outbox.remove(outbox.read(0, 1));
    expect(outbox.full).toBe(true);
    expect(outbox.add(alerts(1))).toBe(0);
    expect(() => outbox.add(alerts(1), 'refuse')).toThrow(SpoolFullError);
    expect(await dropped()).toBe(before + 2);
    outbox.remove(outbox.read(0, 1));
    expect(outbox.size).toBe(17);
    expect(outbox.full).toBe(false);
    expect(room).toBe(1);
    expect(await gauge('verdict_agent_spool_full')).toBe(0);
    expect(outbox.add(alerts(1), 'refuse')).toBe(1);
    expect(outbox.add(alerts(1))).toBe(1);
    db.close();
  });

  it("while full, drops ('drop') without serialising the alerts: a flood meeting a full spool costs no JSON per alert", async () => {
    const { log } = capture();
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    const outbox = new Spool(db, { maxBytes: one * 2, log });
    expect(outbox.add(alerts(2))).toBe(2);
    expect(outbox.full).toBe(true);
    let serialised = 0;
    const watched = {
      ...ciliumPayload({ fp: 'watched' }),
      toJSON() {
        serialised++;
        return ciliumPayload({ fp: 'watched' });
      },
    };
    const before = await dropped();
    expect(outbox.add([watched, watched])).toBe(0);
    expect(serialised).toBe(0);
    expect(await dropped()).toBe(before + 2);
    db.close();
  });

  it('is full at start when what the previous run left reaches the bound', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-spool-'));
    const { log } = capture();
    let db = openAgentDb(dir);
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    expect(new Spool(db, { maxBytes: one * 2, log }).add(alerts(3), 'refuse')).toBe(3);
    db.close();
    db = openAgentDb(dir);
    const again = new Spool(db, { maxBytes: one * 2, log });
    expect(again.full).toBe(true);
    expect(() => again.add(alerts(1), 'refuse')).toThrow(SpoolFullError);
    db.close();
  });

  it('says an alert alone larger than --spool-max-bytes is dropped, not that the spool is full', async () => {
    const { log, lines } = capture();
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(ciliumPayload({ fp: 'size' })));
    const outbox = new Spool(db, { maxBytes: one - 1, log });
    const before = await dropped();
    expect(outbox.add(alerts(2))).toBe(0);
    expect(await dropped()).toBe(before + 2);
    expect(lines.filter((l) => l.msg.startsWith('Alert spool is full'))).toHaveLength(0);
    const tooLarge = lines.filter((l) => l.msg.startsWith('Dropped an alert larger than --spool-max-bytes'));
    expect(tooLarge).toHaveLength(1); // at most one a minute
    expect(tooLarge[0]).toMatchObject({ level: 'warn', alert_bytes: one, max_bytes: one - 1 });
    db.close();
  });

  it('keeps its size right when another process wrote rows it then sends', async () => {
    const { log } = capture();
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    outbox.add(alerts(1));
    const payload = Buffer.from(JSON.stringify(ciliumPayload()));
    db.prepare('INSERT INTO outbox (id, payload, bytes, created_at) VALUES (?, ?, ?, ?)').run('external-1', payload, payload.length, Date.now());
    db.prepare('INSERT INTO outbox (id, payload, bytes, created_at) VALUES (?, ?, ?, ?)').run('external-2', payload, payload.length, Date.now());
    const rows = outbox.read(0, 10);
    outbox.remove(rows.slice(0, 2));
    expect(outbox.size).toBe(1);
    expect(await gauge('verdict_agent_spool_alerts')).toBe(1);
    expect(await gauge('verdict_agent_spool_bytes')).toBe(payload.length);
  });

  it('wakes the sender when alerts are added', () => {
    const { log } = capture();
    const outbox = new Spool(openAgentDb(':memory:'), { maxBytes: 1e9, log });
    let woken = 0;
    const off = outbox.onAdded(() => woken++);
    outbox.add(alerts(2));
    off();
    outbox.add(alerts(1));
    expect(woken).toBe(1);
  });
});
