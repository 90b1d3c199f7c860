import { describe, expect, it } from 'vitest';
import { migrate } from '../../../shared/sqlite/open.js';
import { falcoConfig, silent, store, tmp } from '../../../../test/falco/helpers.js';
import { scenarioEvent, toFalcoJson } from '../../../peers/falco/scenario.js';
import type { AlertPayload } from '../../../shared/alert/payload.js';
import { loadFalcoDefaults } from './defaults.js';
import { parseFalcoJson } from './parse.js';
import { FalcoSink, foldRepeats } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
const alert = (i: number): AlertPayload => builder.build(parseFalcoJson(toFalcoJson(scenarioEvent(i)))).alert!;

describe('FalcoSink', () => {
  it('acknowledges a repeated uuid without counting it, also after a restart', () => {
    const dir = tmp();
    let s = store(dir);
    let sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, log: silent });
    expect(sink.commit([{ alert: alert(0), uuid: 'a' }, { alert: alert(0), uuid: 'a' }, { alert: alert(1), uuid: 'b' }, { alert: alert(1) }]))
      .toEqual(['accepted', 'duplicate', 'accepted', 'accepted']);
    s.db.close();
    s = store(dir);
    sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, log: silent });
    expect(sink.commit([{ alert: alert(0), uuid: 'a' }, { alert: alert(2), uuid: 'c' }])).toEqual(['duplicate', 'accepted']);
    const counts = Object.fromEntries(s.flushed().map((a) => [a.rule, a.count]));
    expect(counts).toEqual({ 'Terminal shell in container': 1, 'Write below etc': 2, 'Detect outbound connections to common miner pool ports': 1 });
  });

  it('keeps the uuid set bounded', () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 50, windowMs: 0, log: silent });
    for (let i = 0; i < 500; i++) sink.commit([{ alert: alert(i), uuid: `u${i}` }]);
    const { n } = s.db.prepare('SELECT count(*) AS n FROM falco_uuids').get() as { n: number };
    expect(n).toBeLessThanOrEqual(55);
    expect(sink.commit([{ alert: alert(0), uuid: 'u499' }])).toEqual(['duplicate']);
    expect(sink.commit([{ alert: alert(0), uuid: 'u0' }])).toEqual(['accepted']);
  });

  it('does not remember the uuids of a transaction that failed', () => {
    const s = store();
    let fail = true;
    const sink = new FalcoSink(s.db, { add: (a, w) => { if (fail) throw new Error('disk full'); s.alerts.add(a, w); } }, { uuidCacheSize: 10, windowMs: 0, log: silent });
    expect(() => sink.commit([{ alert: alert(0), uuid: 'x' }])).toThrow('disk full');
    fail = false;
    expect(sink.commit([{ alert: alert(0), uuid: 'x' }])).toEqual(['accepted']);
    expect(s.outbox.size).toBe(1);
  });

  it('keeps the set bounded across restarts and reads uuids stored by the first table layout', () => {
    const dir = tmp();
    let s = store(dir);
    migrate(s.db, 'falco_uuids', [`CREATE TABLE falco_uuids (seq INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE)`]);
    s.db.prepare("INSERT INTO falco_uuids (uuid) VALUES ('old-1'), ('old-2')").run();
    s.db.close();
    s = store(dir);
    let sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 20, windowMs: 0, log: silent });
    expect(sink.commit([{ alert: alert(0), uuid: 'old-2' }])).toEqual(['duplicate']);
    for (let i = 0; i < 100; i++) sink.commit([{ alert: alert(i), uuid: `n${i}` }]);
    s.db.close();
    s = store(dir);
    sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 20, windowMs: 0, log: silent });
    const { n } = s.db.prepare('SELECT count(*) AS n FROM falco_uuids').get() as { n: number };
    expect(n).toBeLessThanOrEqual(22);
    expect(sink.commit([{ alert: alert(0), uuid: 'n99' }, { alert: alert(0), uuid: 'n80' }, { alert: alert(0), uuid: 'old-1' }])).toEqual(['duplicate', 'duplicate', 'accepted']);
  });

  it('batches concurrent submissions into one add per tick', async () => {
    const s = store();
    const calls: number[] = [];
    const adder = { add: (a: readonly AlertPayload[], w: number) => { calls.push(a.length); s.alerts.add(a, w); } };
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 10, windowMs: 0, log: silent });
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => sink.submit({ alert: alert(i) })));
    expect(outcomes.every((o) => o === 'accepted')).toBe(true);
    expect(calls).toEqual([20]);
    expect(s.outbox.size).toBe(20);
  });

  it('folds repeats in a batch when a window is set, as the aggregator would', () => {
    const folded = foldRepeats([alert(0), alert(1), alert(7), alert(14)]);
    expect(folded.map((a) => a.count)).toEqual([3, 1]);
    expect(folded[0]!.samples).toHaveLength(3);
    const s = store();
    const calls: number[] = [];
    const sink = new FalcoSink(s.db, { add: (a, w) => { calls.push(a.length); s.alerts.add(a, w); } }, { uuidCacheSize: 10, windowMs: 1000, log: silent });
    sink.commit([{ alert: alert(0) }, { alert: alert(7) }]);
    expect(calls).toEqual([1]);
    expect(s.flushed()[0]!.count).toBe(2);
  });

  it('rejects submissions beyond the queue bound', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 10, windowMs: 0, log: silent, maxQueued: 2 });
    const r = await Promise.allSettled([0, 1, 2].map((i) => sink.submit({ alert: alert(i) })));
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
  });
});
