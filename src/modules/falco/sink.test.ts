import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { migrate } from '../../shared/sqlite/open.js';
import { falcoConfig, silent, store, tmp } from '../../../test/falco/helpers.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { loadFalcoDefaults } from './defaults.js';
import { parseFalcoJson } from './parse.js';
import type { Outcome } from './events.js';
import { type AlertAdder, FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
const alert = (i: number): AlertPayload => builder.build(parseFalcoJson(toFalcoJson(scenarioEvent(i)))).alert!;
/** Occurrences per rule, summed over the alerts sent at once and those folded. */
const countsByRule = (alerts: readonly AlertPayload[]) => {
  const n: Record<string, number> = {};
  for (const a of alerts) n[a.rule] = (n[a.rule] ?? 0) + a.count;
  return n;
};

describe('FalcoSink', () => {
  it('acknowledges a repeated uuid without counting it, also after a restart', () => {
    const dir = tmp();
    let s = store(dir);
    let sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, log: silent });
    expect(sink.commit([{ alert: alert(0), uuid: 'a' }, { alert: alert(0), uuid: 'a' }, { alert: alert(1), uuid: 'b' }, { alert: alert(1) }])).toEqual([
      'accepted',
      'duplicate',
      'accepted',
      'accepted',
    ]);
    s.db.close();
    s = store(dir);
    sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, log: silent });
    expect(
      sink.commit([
        { alert: alert(0), uuid: 'a' },
        { alert: alert(2), uuid: 'c' },
      ]),
    ).toEqual(['duplicate', 'accepted']);
    expect(countsByRule(s.flushed())).toEqual({
      'Terminal shell in container': 1,
      'Write below etc': 2,
      'Detect outbound connections to common miner pool ports': 1,
    });
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
    const sink = new FalcoSink(
      s.db,
      {
        add: (a, w, t) => {
          if (fail) throw new Error('disk full');
          s.alerts.add(a, w, t);
        },
      },
      { uuidCacheSize: 10, windowMs: 0, log: silent },
    );
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
    expect(
      sink.commit([
        { alert: alert(0), uuid: 'n99' },
        { alert: alert(0), uuid: 'n80' },
        { alert: alert(0), uuid: 'old-1' },
      ]),
    ).toEqual(['duplicate', 'duplicate', 'accepted']);
  });

  it('batches concurrent submissions into one add per tick', async () => {
    const s = store();
    const calls: number[] = [];
    const adder = {
      add: (a: readonly AlertPayload[], w: number, t?: () => void) => {
        calls.push(a.length);
        s.alerts.add(a, w, t);
      },
    };
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 10, windowMs: 0, log: silent });
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => sink.submit({ alert: alert(i) })));
    expect(outcomes.every((o) => o === 'accepted')).toBe(true);
    expect(calls).toEqual([20]);
    expect(s.outbox.size).toBe(20);
  });

  it('folds repeats in a batch when a window is set, in one transaction, one group each', () => {
    const s = store();
    const calls: number[] = [];
    const sink = new FalcoSink(
      s.db,
      {
        add: (a, w, t) => {
          calls.push(a.length);
          s.alerts.add(a, w, t);
        },
      },
      { uuidCacheSize: 10, windowMs: 1000, log: silent },
    );
    sink.commit([{ alert: alert(0) }, { alert: alert(1) }, { alert: alert(7) }, { alert: alert(14) }]);
    expect(calls).toEqual([4]);
    expect((s.db.prepare('SELECT count(*) AS n FROM pending_alert_counts').get() as { n: number }).n).toBe(2);
    const folded = s.flushed();
    expect(folded.map((a) => a.count)).toEqual([3, 1]);
    expect(folded[0]!.samples).toHaveLength(3);
  });

  it('does not hold an input waiting for room that nothing would announce: an adder with spoolFull but no onSpoolRoom takes the backoff', async () => {
    const s = store();
    // A plain-JS adder the types would refuse (spoolFull without onSpoolRoom).
    const adder = { add: s.alerts.add.bind(s.alerts), spoolFull: true } as unknown as AlertAdder;
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 10, windowMs: 0, log: silent });
    // stdin and gRPC wait for room only while this is true; waiting would resolve at once and spin them.
    expect(sink.spoolFull).toBe(false);
    await sink.waitForSpoolRoom(new AbortController().signal);
    await sink.close();
  });

  it('rejects submissions beyond the queue bound', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 10, windowMs: 0, log: silent, maxQueued: 2 });
    const r = await Promise.allSettled([0, 1, 2].map((i) => sink.submit({ alert: alert(i) })));
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
  });
});

/** Posts like the HTTP input does: parsed event and raw body. */
function acceptAll(sink: FalcoSink, texts: readonly string[]): Promise<Outcome[]> {
  return Promise.all(
    texts.map(
      (t) =>
        new Promise<Outcome>((resolve, reject) => {
          sink.accept(parseFalcoJson(t), Buffer.from(t), (e, o) => (e ? reject(e) : resolve(o!)));
        }),
    ),
  );
}

describe('FalcoSink inbox (HTTP)', () => {
  const event = (i: number, uuid?: string) => toFalcoJson({ ...scenarioEvent(i), ...(uuid ? { uuid } : {}) });

  it('answers once the body is stored and writes the occurrences later, in batches', async () => {
    const s = store(tmp());
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, builder, log: silent, persistIntervalMs: 60_000 });
    expect(await acceptAll(sink, [event(0, 'a'), event(7, 'b'), event(0, 'a')])).toEqual(['accepted', 'accepted', 'duplicate']);
    expect(s.alerts.pending).toBe(1);
    expect(sink.unwritten).toBe(2);
    expect((s.db.prepare('SELECT count(*) AS n FROM pending_alerts').get() as { n: number }).n).toBe(0);
    await sink.settle();
    expect(sink.unwritten).toBe(0);
    expect((s.db.prepare('SELECT count(*) AS n FROM falco_uuids').get() as { n: number }).n).toBe(2);
    expect(countsByRule(s.flushed())).toEqual({ 'Terminal shell in container': 2 });
    await sink.close();
  });

  it("spools a new fingerprint's alert with the write after the answer, not when its window closes, and folds the repeats", async () => {
    const s = store(tmp());
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 3_600_000, builder, log: silent, persistIntervalMs: 60_000 });
    await acceptAll(sink, [event(0, 'a')]);
    await sink.settle();
    expect(s.outbox.size).toBe(1);
    // A repeat of the same fingerprint waits for the window.
    await acceptAll(sink, [event(7, 'b')]);
    await sink.settle();
    expect(s.outbox.size).toBe(1);
    expect(s.flushed().map((a) => [a.rule, a.count])).toEqual([
      ['Terminal shell in container', 1],
      ['Terminal shell in container', 1],
    ]);
    await sink.close();
  });

  it('turns what a crash left in the inbox into occurrences at start, exactly once, and remembers its uuids', async () => {
    const dir = tmp();
    let s = store(dir);
    let sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, builder, log: silent, persistIntervalMs: 60_000 });
    await acceptAll(sink, [event(0, 'a'), event(1, 'b')]);
    await sink.settle();
    await acceptAll(sink, [event(0, 'c'), event(2, 'd')]);
    // The process dies: the last two are answered but only in the inbox.
    expect(sink.unwritten).toBe(2);
    s.db.close();
    s = store(dir);
    sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, builder, log: silent, persistIntervalMs: 60_000 });
    expect(sink.unwritten).toBe(0);
    expect(await acceptAll(sink, [event(2, 'd'), event(1, 'b'), event(3, 'e')])).toEqual(['duplicate', 'duplicate', 'accepted']);
    // Dies again before writing; the second restart must not count the first inbox twice.
    s.db.close();
    s = store(dir);
    sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, builder, log: silent });
    expect(countsByRule(s.flushed())).toEqual({
      'Terminal shell in container': 2,
      'Write below etc': 1,
      'Detect outbound connections to common miner pool ports': 1,
      'Read sensitive file untrusted': 1,
    });
    await sink.close();
    expect(readdirSync(dir).filter((n) => n.startsWith('falco-inbox-')).length).toBeLessThanOrEqual(2);
  });

  it('reads its events again from the inbox when writing their occurrences fails', async () => {
    const s = store(tmp());
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 100, windowMs: 60_000, builder, log: silent, persistIntervalMs: 10 });
    s.db.exec("CREATE TEMP TRIGGER fail BEFORE INSERT ON pending_alert_counts BEGIN SELECT RAISE(FAIL, 'disk full'); END");
    await acceptAll(sink, [event(0, 'a'), event(7, 'b'), event(1, 'c')]);
    await new Promise((r) => setTimeout(r, 50));
    // Every write failed; the events wait in the inbox (and are staged again after each failure).
    expect(sink.unwritten).toBe(3);
    expect((s.db.prepare('SELECT count(*) AS n FROM pending_alerts').get() as { n: number }).n).toBe(0);
    s.db.exec('DROP TRIGGER fail');
    await acceptAll(sink, [event(0, 'a'), event(14, 'd')]);
    for (let i = 0; i < 100 && sink.unwritten; i++) await new Promise((r) => setTimeout(r, 20));
    expect(sink.unwritten).toBe(0);
    expect(countsByRule(s.flushed())).toEqual({ 'Terminal shell in container': 3, 'Write below etc': 1 });
    await sink.close();
  });

  it('writes occurrences without a window at once, and refuses work while stopping', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, builder, log: silent });
    await acceptAll(sink, [event(0), event(0)]);
    expect(s.outbox.size).toBe(2);
    const closing = sink.close();
    await expect(acceptAll(sink, [event(1)])).rejects.toThrow(/stopping/);
    await closing;
  });
});
