import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { falcoConfig, store, tmp } from '../../../test/falco/helpers.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { startFalcoHttpInput } from './http.js';
import { falcoEvents } from './events.js';
import { FileInbox, readInboxDir, type Inbox } from './inbox.js';
import { parseFalcoJson, type FalcoEvent } from './parse.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

// When writing the occurrences of answered events fails, the events stay in
// the inbox and a timer reads them back: that reading can fail too (the disk),
// and must then be retried, not thrown out of the timer.

interface Internals {
  inboxSink: { staging: { commit(inTx?: () => void): void }; store: Inbox | undefined };
}

/** A store, a Falco sink without a dedup window (alerts written at once) and its HTTP input, logging to `logs`. */
async function windowless() {
  const s = store();
  const cfg = falcoConfig('falco:\n  http: {}\n  dedup_window: 0s\n');
  const builder = new FalcoAlertBuilder(cfg, loadFalcoDefaults());
  const { log, logs } = capturingLogger();
  const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: 0, builder, log, persistIntervalMs: 20 });
  const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1 << 20, builder, sink, log });
  return { s, logs, sink, input };
}

describe('Falco HTTP inbox, storage failing', () => {
  it('retries reading the inbox back after a failed write, until the alerts are written', async () => {
    const { s, logs, sink, input } = await windowless();
    try {
      const inner = (sink as unknown as Internals).inboxSink;
      const commit = inner.staging.commit.bind(inner.staging);
      let commitFailures = 1;
      // As a failing disk does: the transaction rolls back, and what was staged is gone from memory.
      inner.staging.commit = (inTx) =>
        commit(
          commitFailures-- > 0
            ? () => {
                throw new Database.SqliteError('disk I/O error', 'SQLITE_IOERR');
              }
            : inTx,
        );
      const res = await fetch(`http://127.0.0.1:${input.port}/`, { method: 'POST', body: toFalcoJson(scenarioEvent(0)) });
      expect(res.status).toBe(200);
      // The inbox exists once the first event is appended: its read-back fails twice.
      const inbox = inner.store!;
      const read = inbox.read.bind(inbox);
      let readFailures = 2;
      inbox.read = (from, limit) => {
        if (readFailures-- > 0) throw new Error('EIO: i/o error, read');
        return read(from, limit);
      };
      await until(() => (s.flushed().length === 1 ? true : undefined), 10_000, 'the alert of the answered event');
      expect(readFailures).toBeLessThan(0);
      expect(logs.filter((l) => l.msg === 'Failed to read stored Falco events back; retrying').map((l) => l.error)).toEqual(['EIO: i/o error, read']);
    } finally {
      await input.close();
    }
  });
});

// 100,000 nested lists (200 kB): JSON.stringify overflows the stack on it wherever it is called.
const deepEvent = `{"rule":"depth","priority":"Error","time":"2026-01-01T00:00:00Z","output":"o","output_fields":{"x":${'['.repeat(100_000)}1${']'.repeat(100_000)}}}`;

async function outcomeCount(outcome: string): Promise<number> {
  return (await falcoEvents.get()).values.find((v) => v.labels.input === 'http' && v.labels.outcome === outcome)?.value ?? 0;
}

/** An inbox as an earlier run left it: these bodies answered, none written as alerts. */
function leftInbox(bodies: string[]): string {
  const dir = tmp();
  const inbox = new FileInbox(dir, { gen: 0, offset: 0 });
  inbox.append(bodies.map((b) => Buffer.from(b)));
  inbox.close();
  return dir;
}

/** A builder whose alert for an event with output "poison" cannot be serialised (a BigInt sample): a fault that costs only that event. */
class PoisonBuilder extends FalcoAlertBuilder {
  override toAlert(ev: FalcoEvent) {
    const a = super.toAlert(ev);
    if (ev.output === 'poison') a.samples = [{ n: 1n }];
    return a;
  }
}

describe('Falco HTTP inbox, an event whose alert can never be written', () => {
  it('says events stored before the restart wait in the inbox, not that they became alerts, when the spool is full at start', async () => {
    const events = [0, 1, 2].map((i) => toFalcoJson(scenarioEvent(i)));
    const dir = leftInbox(events);
    const cfg = falcoConfig('falco:\n  http: {}\n');
    const builder = new FalcoAlertBuilder(cfg, loadFalcoDefaults());
    const other = builder.toAlert(parseFalcoJson(events[0]!));
    const s = store(dir, Buffer.byteLength(JSON.stringify(other)) * 2);
    for (let i = 0; !s.outbox.full; i++) s.outbox.add([{ ...other, source: 'cilium', fingerprint: `other-${i}` }]);
    const { log, logs } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: 0, builder, log, persistIntervalMs: 60_000 });
    try {
      expect(logs.filter((l) => l.msg.startsWith('Turned Falco events stored before the restart'))).toEqual([]);
      expect(logs.find((l) => l.msg.startsWith('Falco events stored before the restart wait in the inbox'))).toMatchObject({ events: 3 });
      expect(sink.unwritten).toBe(3);
      s.outbox.remove(s.outbox.read(0, 100));
      await sink.settle();
      expect(sink.unwritten).toBe(0);
      expect(s.outbox.size).toBe(3);
    } finally {
      await sink.close();
    }
  });

  it('skips an event nested too deep that an earlier run stored, once, and writes the events after it', async () => {
    const good = [0, 1, 2].map((i) => toFalcoJson(scenarioEvent(i)));
    const dir = leftInbox([deepEvent, ...good]);
    const s = store(dir);
    const cfg = falcoConfig('falco:\n  http: {}\n');
    const builder = new FalcoAlertBuilder(cfg, loadFalcoDefaults());
    const { log, logs } = capturingLogger();
    const invalid = await outcomeCount('invalid');
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: cfg.dedup_window, builder, log, persistIntervalMs: 20 });
    let alerts: ReturnType<typeof s.flushed>;
    try {
      alerts = await until(
        () => {
          const a = s.flushed();
          return a.length === 3 ? a : undefined;
        },
        10_000,
        'the alerts of the three events after the deep one',
      );
    } finally {
      await sink.close();
    }
    // Closed: whatever the sink was to do is done, so "once" and the final counts are settled.
    expect(s.flushed()).toEqual(alerts);
    expect(alerts.map((a) => a.rule).sort()).toEqual([0, 1, 2].map((i) => scenarioEvent(i).rule).sort());
    const skipped = logs.filter((l) => l.msg === 'Skipped a stored Falco event that cannot be read back; the events after it are written');
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({
      inbox: 'falco-inbox-1.log',
      offset: 0,
      error: expect.stringMatching(/more than 32 levels deep/),
    });
    expect(await outcomeCount('invalid')).toBe(invalid + 1);
    expect(logs.filter((l) => l.level === 'error' && l !== skipped[0])).toEqual([]);
    // Consumed: a restart reads nothing back.
    const state = s.db.prepare('SELECT gen, offset FROM falco_inbox_state').get() as { gen: number; offset: number };
    expect(readInboxDir(dir, state)).toEqual([]);
  });

  it('finds the one event among many whose alert fails to be written, skips it once and writes the others', async () => {
    // An event that passes the checks but whose alert cannot be serialised must cost only that event.
    const events = Array.from({ length: 40 }, (_, i) => toFalcoJson({ ...scenarioEvent(i), output: i === 23 ? 'poison' : `event ${i}` }));
    const dir = leftInbox(events);
    const s = store(dir);
    const cfg = falcoConfig('falco:\n  http: {}\n');
    const builder = new PoisonBuilder(cfg, loadFalcoDefaults());
    const { log, logs } = capturingLogger();
    const unwritable = await outcomeCount('unwritable');
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: cfg.dedup_window, builder, log, persistIntervalMs: 20 });
    const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1 << 20, builder, sink, log });
    const expected = 40 - 1 + 1;
    const count = () => s.flushed().reduce((n, a) => n + a.count, 0);
    try {
      // Posted while the stored events are written: flows after them.
      const res = await fetch(`http://127.0.0.1:${input.port}/`, { method: 'POST', body: toFalcoJson({ ...scenarioEvent(40), output: 'posted' }) });
      expect(res.status).toBe(200);
      await until(
        () => (count() === expected ? true : undefined),
        10_000,
        () => `the ${expected} written events (${count()} so far)`,
      );
    } finally {
      await input.close();
      await sink.close();
    }
    // Closed: whatever the sink was to do is done, so "once" and the final count are settled.
    expect(count()).toBe(expected);
    const skipped = logs.filter((l) => l.msg === 'Skipped a stored Falco event whose alert cannot be written; the events after it are written');
    expect(skipped).toHaveLength(1);
    const offset = events.slice(0, 23).reduce((n, e) => n + 8 + Buffer.byteLength(e), 0);
    expect(skipped[0]).toMatchObject({ inbox: 'falco-inbox-1.log', offset, event: expect.stringContaining('"output":"poison"') });
    expect(await outcomeCount('unwritable')).toBe(unwritable + 1);
    // At start they were being written in smaller runs, not waiting.
    expect(logs.filter((l) => l.msg.startsWith('Falco events stored before the restart wait in the inbox'))).toEqual([]);
    expect(logs.find((l) => l.msg.startsWith('Falco events stored before the restart include one whose alert cannot be written'))).toMatchObject({
      events: 40,
    });
  });
});

describe('Falco HTTP inbox, replays after a failed write', () => {
  it('counts and logs a stored event that cannot be read back once, however often narrowing reads it again', async () => {
    // The unreadable event sits beside the poisoned one, so every run that narrows down to the poison reads it again.
    const events = Array.from({ length: 40 }, (_, i) =>
      i === 22 ? deepEvent : toFalcoJson({ ...scenarioEvent(i), output: i === 23 ? 'poison' : `event ${i}` }),
    );
    const s = store(leftInbox(events));
    const cfg = falcoConfig('falco:\n  http: {}\n');
    const builder = new PoisonBuilder(cfg, loadFalcoDefaults());
    const { log, logs } = capturingLogger();
    const invalid = await outcomeCount('invalid');
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: cfg.dedup_window, builder, log, persistIntervalMs: 20 });
    try {
      const count = () => s.flushed().reduce((n, a) => n + a.count, 0);
      await until(
        () => (count() === 38 ? true : undefined),
        10_000,
        () => `the 38 written events (${count()} so far)`,
      );
      await new Promise((r) => setTimeout(r, 200));
      expect(logs.filter((l) => l.msg === 'Skipped a stored Falco event whose alert cannot be written; the events after it are written')).toHaveLength(1);
      const unreadable = logs.filter((l) => l.msg === 'Skipped a stored Falco event that cannot be read back; the events after it are written');
      expect(unreadable).toHaveLength(1);
      expect(await outcomeCount('invalid')).toBe(invalid + 1);
    } finally {
      await sink.close();
    }
  });

  it('logs a write that keeps failing after skipping an event once per interval, with the events waiting', async () => {
    const { logs, sink, input } = await windowless();
    const inner = (sink as unknown as Internals).inboxSink;
    const commit = inner.staging.commit.bind(inner.staging);
    // Every commit fails, and not as the storage does: the one event is taken as unwritable, and so is recording the skip past it.
    let failing = true;
    inner.staging.commit = (inTx) =>
      commit(() => {
        if (failing) throw new TypeError('cannot write');
        inTx?.();
      });
    try {
      const res = await fetch(`http://127.0.0.1:${input.port}/`, { method: 'POST', body: toFalcoJson(scenarioEvent(0)) });
      expect(res.status).toBe(200);
      const failed = () => logs.filter((l) => l.msg === 'Failed to write alerts for stored Falco events; they stay in the inbox and are retried');
      await until(() => (failed().length ? true : undefined), 10_000, 'the failed write');
      // Retried every 20 ms: without the throttle each retry logs.
      await new Promise((r) => setTimeout(r, 500));
      expect(failed()).toHaveLength(1);
      expect(failed()[0]).toMatchObject({ error: 'cannot write', events: 1, suppressed: 0 });
    } finally {
      failing = false;
      await input.close();
      await sink.close();
    }
  });
});
