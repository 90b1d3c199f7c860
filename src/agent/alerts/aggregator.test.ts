import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ALERT_SCHEMA, type AlertPayload } from '../../shared/alert/payload.js';
import { openAgentDb } from '../spool/agent-db.js';
import { Spool, SpoolFullError } from '../spool/spool.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate } from '../../shared/sqlite/open.js';
import { AlertAggregator } from './aggregator.js';

const log = pino({ level: 'silent' });

function alert(fp: string, t: string, extra: Partial<AlertPayload> = {}): AlertPayload {
  return {
    schema: ALERT_SCHEMA,
    source: 'falco',
    fingerprint: fp,
    severity: 'high',
    title: 't',
    description: `d ${t}`,
    cluster: '',
    namespace: 'ns',
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [],
    rule: 'r',
    labels: {},
    samples: [{ t }],
    ...extra,
  };
}

/** An aggregator and its spool on a fresh in-memory database, on the test's clock. */
function aggregatorAt(now: () => number) {
  const db = openAgentDb(':memory:');
  const outbox = new Spool(db, { maxBytes: 1e9, log });
  return { db, outbox, agg: new AlertAggregator(db, outbox, { log, now }) };
}

const sent = (outbox: Spool) => outbox.read(0, 1000).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
const total = (alerts: AlertPayload[]) => alerts.reduce((n, a) => n + a.count, 0);

describe('AlertAggregator', () => {
  it('sends the first occurrence of a fingerprint at once and the repeats inside its window folded into one alert when it closes', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')], 1000);
    expect(sent(outbox).map((r) => [r.fingerprint, r.count])).toEqual([
      ['a', 1],
      ['b', 1],
    ]);
    now = 500;
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 1000);
    agg.add([alert('a', '2026-01-01T00:00:05Z')], 1000);
    expect(agg.flush()).toBe(0);
    expect(outbox.size).toBe(2);
    now = 1000;
    expect(agg.flush()).toBe(1);
    const rows = sent(outbox);
    expect(rows).toHaveLength(3);
    const a = rows[2]!;
    expect(a).toMatchObject({
      fingerprint: 'a',
      count: 2,
      first_seen: '2026-01-01T00:00:01Z',
      last_seen: '2026-01-01T00:00:05Z',
      description: 'd 2026-01-01T00:00:01Z',
    });
    expect(a.samples).toEqual([{ t: '2026-01-01T00:00:01Z' }, { t: '2026-01-01T00:00:05Z' }]);
    // Every occurrence counted once, between the alert sent at once and the folded one.
    expect(total(rows.filter((r) => r.fingerprint === 'a'))).toBe(3);
    // b's window passed quiet and is closed; a's reopened, quiet, for another window.
    expect(agg.pending).toBe(1);
  });

  it('sends the occurrences of a new fingerprint arriving in one write as one alert, at once', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).add([alert('a', '2026-01-01T00:00:02Z'), alert('a', '2026-01-01T00:00:01Z')], 60_000);
    expect(sent(outbox)).toMatchObject([{ fingerprint: 'a', count: 2, first_seen: '2026-01-01T00:00:01Z', last_seen: '2026-01-01T00:00:02Z' }]);
  });

  it('sends one alert per window under steady noise, counting every occurrence once', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    let occurrences = 0;
    // One occurrence every 100 ms for five windows of a second, the timer flushing as often.
    for (now = 0; now < 5000; now += 100) {
      agg.flush();
      agg.add([alert('a', new Date(Date.UTC(2026, 0, 1) + now).toISOString())], 1000);
      occurrences++;
    }
    agg.flush();
    now = 5000;
    agg.flush();
    const rows = sent(outbox);
    // The first at once, then one per window closing (at 1 s, 2 s, 3 s, 4 s and 5 s).
    expect(rows.map((r) => r.count)).toEqual([1, 9, 10, 10, 10, 10]);
    expect(total(rows)).toBe(occurrences);
  });

  it('sends at once again what comes after a window without repeats', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:00Z')], 1000);
    now = 500;
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 1000);
    now = 1000;
    expect(agg.flush()).toBe(1);
    now = 2000;
    // The window after the repeats passed quiet: nothing to send, and the group is closed.
    expect(agg.flush()).toBe(0);
    expect(agg.pending).toBe(0);
    now = 2500;
    agg.add([alert('a', '2026-01-01T00:00:03Z')], 1000);
    expect(sent(outbox).map((r) => [r.count, r.first_seen])).toEqual([
      [1, '2026-01-01T00:00:00Z'],
      [1, '2026-01-01T00:00:01Z'],
      [1, '2026-01-01T00:00:03Z'],
    ]);
  });

  it('gives what comes after a sent alert its own severity, title and samples, not those of the alert before', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:00Z', { severity: 'critical', title: 'boom' })], 1000);
    // A repeat inside the window of the critical one that was sent at once.
    now = 500;
    agg.add([alert('a', '2026-01-01T00:00:01Z', { severity: 'low', title: 'calm' })], 1000);
    now = 1000;
    agg.flush();
    // After a window with nothing in it: a new alert, sent at once.
    now = 2000;
    agg.flush();
    now = 2500;
    agg.add([alert('a', '2026-01-01T00:00:03Z', { severity: 'info', title: 'quiet' })], 1000);
    const [, folded, after] = sent(outbox);
    expect(folded).toMatchObject({ count: 1, severity: 'low', title: 'calm', first_seen: '2026-01-01T00:00:01Z', samples: [{ t: '2026-01-01T00:00:01Z' }] });
    expect(after).toMatchObject({ count: 1, severity: 'info', title: 'quiet', samples: [{ t: '2026-01-01T00:00:03Z' }] });
  });

  it('closes a quiet window sooner when a repeat asks for a shorter one', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:00Z')], 3_600_000);
    // dedup_window shortened from 1h to 10s while the group waits quiet.
    now = 120_000;
    agg.add([alert('a', '2026-01-01T00:02:00Z', { severity: 'critical' })], 10_000);
    now = 130_000;
    expect(agg.flush()).toBe(1);
    expect(sent(outbox).map((r) => [r.count, r.severity])).toEqual([
      [1, 'high'],
      [1, 'critical'],
    ]);
  });

  it('reopens a group for the window its latest repeats asked for', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:00Z')], 1000);
    // dedup_window changed to 5 s.
    now = 500;
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 5000);
    now = 1000;
    expect(agg.flush()).toBe(1);
    now = 2000;
    expect(agg.flush()).toBe(0);
    expect(agg.pending).toBe(1);
    now = 5999;
    agg.add([alert('a', '2026-01-01T00:00:05Z')], 5000);
    expect(outbox.size).toBe(2);
    now = 6000;
    expect(agg.flush()).toBe(1);
  });

  it('adds nothing of a batch in which one occurrence cannot be serialised, so the batch can be added again without counting twice', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 60_000);
    const batch = () => [alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')];
    // JSON.stringify throws on a BigInt, as it does on a value nested too deep for the stack.
    expect(() => agg.add([...batch(), alert('c', '2026-01-01T00:00:04Z', { samples: [{ n: 1n }] })], 60_000)).toThrow(TypeError);
    expect(sent(outbox).map((r) => r.fingerprint)).toEqual(['a']);
    expect(outbox.size).toBe(1);
    agg.add(batch(), 60_000);
    expect(agg.flush(true)).toBe(1);
    expect(sent(outbox).map((r) => [r.fingerprint, r.count, r.samples.length])).toEqual([
      ['a', 1, 1],
      ['b', 1, 1],
      ['a', 1, 1],
    ]);
  });

  it('resumes a group holding repeats after a restart and sends them once when its window closes', () => {
    let now = 0;
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    let agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log, now: () => now });
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 60_000);
    agg.add([alert('a', '2026-01-01T00:00:02Z'), alert('a', '2026-01-01T00:00:03Z')], 60_000);
    db.close(); // the process dies with the window still open
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    agg = new AlertAggregator(db, outbox, { log, now: () => now });
    expect(agg.pending).toBe(1);
    expect(agg.flush()).toBe(0);
    now = 60_000;
    expect(agg.flush()).toBe(1);
    expect(sent(outbox).map((r) => [r.count, r.first_seen])).toEqual([
      [1, '2026-01-01T00:00:01Z'],
      [2, '2026-01-01T00:00:02Z'],
    ]);
    // Sent, the group reopened quiet; it stays so across another restart, and closes with nothing sent.
    db.close();
    db = openAgentDb(dir);
    const again = new Spool(db, { maxBytes: 1e9, log });
    agg = new AlertAggregator(db, again, { log, now: () => now });
    expect(agg.pending).toBe(1);
    now = 120_000;
    expect(agg.flush()).toBe(0);
    expect(agg.pending).toBe(0);
    expect(again.size).toBe(2);
  });

  it('resumes a quiet group after a restart: a repeat folds into it, and without one it closes with nothing sent', () => {
    let now = 0;
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log, now: () => now }).add(
      [alert('a', '2026-01-01T00:00:01Z', { severity: 'critical' }), alert('b', '2026-01-01T00:00:01Z')],
      60_000,
    );
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log, now: () => now });
    expect(agg.pending).toBe(2);
    now = 30_000;
    agg.add([alert('a', '2026-01-01T00:00:31Z', { severity: 'low' })], 60_000);
    expect(outbox.size).toBe(2);
    now = 60_000;
    expect(agg.flush()).toBe(1);
    expect(sent(outbox).map((r) => [r.fingerprint, r.count, r.severity])).toEqual([
      ['a', 1, 'critical'],
      ['b', 1, 'high'],
      ['a', 1, 'low'],
    ]);
  });

  it('puts a group back as stored, quiet or new, when the transaction writing it fails', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:01Z', { severity: 'critical' })], 60_000);
    const fail = () => {
      throw new Error('disk full');
    };
    expect(() => agg.add([alert('a', '2026-01-01T00:00:02Z', { severity: 'low' }), alert('b', '2026-01-01T00:00:02Z')], 60_000, fail)).toThrow('disk full');
    expect(outbox.size).toBe(1);
    expect(agg.pending).toBe(1);
    // a is quiet still (what failed did not fold into it), b is new still.
    agg.add([alert('a', '2026-01-01T00:00:03Z', { severity: 'medium' }), alert('b', '2026-01-01T00:00:03Z')], 60_000);
    expect(outbox.size).toBe(2);
    now = 60_000;
    agg.flush();
    expect(sent(outbox).map((r) => [r.fingerprint, r.count, r.severity, r.samples.length])).toEqual([
      ['a', 1, 'critical', 1],
      ['b', 1, 'high', 1],
      ['a', 1, 'medium', 1],
    ]);
  });

  it('leaves the spool counting only committed rows when a transaction fails after the spool added its rows, or while adding them', () => {
    const db = openAgentDb(':memory:');
    db.pragma('foreign_keys = ON');
    db.exec('CREATE TABLE parent (id INTEGER PRIMARY KEY); CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    // A deferred foreign key fails the COMMIT itself, after every statement of the transaction ran.
    const orphan = () => void db.prepare('INSERT INTO child (p) VALUES (1)').run();
    expect(() => agg.add([alert('a', '2026-01-01T00:00:01Z')], 60_000, orphan)).toThrow(/FOREIGN KEY/);
    expect(() => agg.add([alert('b', '2026-01-01T00:00:01Z')], 0, orphan)).toThrow(/FOREIGN KEY/);
    expect(() => agg.add([alert('c', '2026-01-01T00:00:01Z', { labels: { n: 1n as unknown as string } })], 0)).toThrow(/BigInt/);
    expect(outbox.read(0, 10)).toHaveLength(0);
    expect(outbox.size).toBe(0);
    agg.add([alert('a', '2026-01-01T00:00:02Z')], 60_000);
    expect(outbox.size).toBe(1);
  });

  it('counts in verdict_agent_alerts_emitted_total every alert it spools, the one sent at once too', async () => {
    const emitted = async () =>
      (await registry.getSingleMetric('verdict_agent_alerts_emitted_total')!.get()).values.find((v) => v.labels.source === 'gitops')?.value ?? 0;
    const before = await emitted();
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    agg.add([alert('a', '2026-01-01T00:00:00Z', { source: 'gitops' })], 1000);
    expect(await emitted()).toBe(before + 1);
    agg.add([alert('a', '2026-01-01T00:00:01Z', { source: 'gitops' })], 1000);
    now = 1000;
    agg.flush();
    now = 2000;
    agg.flush();
    expect(await emitted()).toBe(before + 2);
    expect(outbox.size).toBe(2);
  });

  it('passes alerts straight to the spool with a zero window', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).add([alert('a', 't'), alert('a', 't')], 0);
    expect(outbox.size).toBe(2);
  });

  it('keeps a group whose window closes while the spool is full, repeats and all, until there is room', () => {
    let now = 0;
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(alert('a', '2026-01-01T00:00:00Z')));
    // The cilium alert below is one byte longer (its source).
    const outbox = new Spool(db, { maxBytes: one * 2 + 1, log });
    const agg = new AlertAggregator(db, outbox, { log, now: () => now });
    agg.add([alert('a', '2026-01-01T00:00:00Z')], 1000);
    agg.add([alert('a', '2026-01-01T00:00:01Z'), alert('a', '2026-01-01T00:00:02Z')], 1000);
    // Another source fills the spool, dropping as Cilium does.
    outbox.add([alert('x', '2026-01-01T00:00:00Z', { source: 'cilium' })]);
    expect(outbox.full).toBe(true);
    now = 1000;
    expect(agg.flush()).toBe(0);
    expect(agg.flush(true)).toBe(0);
    // Repeats keep folding into the group meanwhile.
    agg.add([alert('a', '2026-01-01T00:00:03Z')], 1000);
    expect(outbox.size).toBe(2);
    outbox.remove(outbox.read(0, 10));
    expect(outbox.full).toBe(false);
    expect(agg.flush()).toBe(1);
    expect(sent(outbox)).toMatchObject([{ fingerprint: 'a', count: 3, first_seen: '2026-01-01T00:00:01Z', last_seen: '2026-01-01T00:00:03Z' }]);
  });

  it("refuses a whole 'refuse' write that would spool while the spool is full, and counts its occurrences only once written", async () => {
    const occurrences = async () =>
      (await registry.getSingleMetric('verdict_agent_alert_occurrences_total')!.get()).values.find((v) => v.labels.source === 'gitops')?.value ?? 0;
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(alert('a', '2026-01-01T00:00:00Z', { source: 'gitops' })));
    const outbox = new Spool(db, { maxBytes: one, log });
    const agg = new AlertAggregator(db, outbox, { log });
    const before = await occurrences();
    agg.add([alert('a', '2026-01-01T00:00:00Z', { source: 'gitops' })], 60_000, undefined, 'refuse');
    expect(outbox.full).toBe(true);
    const staging = agg.staging('refuse');
    let marked = 0;
    for (const windowMs of [60_000, 0]) {
      staging.stage([alert('b', '2026-01-01T00:00:01Z', { source: 'gitops' })], windowMs);
      expect(() => staging.commit(() => marked++)).toThrow(SpoolFullError);
      expect(() => agg.add([alert('c', '2026-01-01T00:00:01Z', { source: 'gitops' })], windowMs, () => marked++, 'refuse')).toThrow(SpoolFullError);
    }
    expect(agg.pending).toBe(1);
    expect(outbox.size).toBe(1);
    expect(await occurrences()).toBe(before + 1);
    // A repeat into the open group spools nothing: written even now.
    agg.add([alert('a', '2026-01-01T00:00:02Z', { source: 'gitops' })], 60_000, undefined, 'refuse');
    expect(await occurrences()).toBe(before + 2);
    outbox.remove(outbox.read(0, 10));
    staging.stage([alert('b', '2026-01-01T00:00:01Z', { source: 'gitops' })], 60_000);
    staging.commit();
    expect(sent(outbox).map((a) => a.fingerprint)).toEqual(['b']);
    expect(await occurrences()).toBe(before + 3);
  });

  it('counts what a staging held, of every source it saw, once its commit is written, and nothing of a commit that failed', async () => {
    const count = async (source: string) =>
      (await registry.getSingleMetric('verdict_agent_alert_occurrences_total')!.get()).values.find((v) => v.labels.source === source)?.value ?? 0;
    const { agg } = aggregatorAt(() => Date.parse('2026-01-01T00:00:00Z'));
    const before = { falco: await count('falco'), gitops: await count('gitops') };
    const staging = agg.staging();
    staging.stage([alert('f', '2026-01-01T00:00:00Z'), alert('g', '2026-01-01T00:00:00Z', { source: 'gitops', count: 2 })], 60_000);
    staging.stage([alert('f', '2026-01-01T00:00:01Z')], 60_000);
    expect(() =>
      staging.commit(() => {
        throw new Error('disk full');
      }),
    ).toThrow('disk full');
    expect(await count('falco')).toBe(before.falco);
    staging.stage([alert('f', '2026-01-01T00:00:00Z'), alert('g', '2026-01-01T00:00:00Z', { source: 'gitops', count: 2 })], 60_000);
    staging.stage([alert('f', '2026-01-01T00:00:01Z')], 60_000);
    staging.commit();
    expect(await count('falco')).toBe(before.falco + 2);
    expect(await count('gitops')).toBe(before.gitops + 2);
  });

  it("refuses a 'refuse' write while the spool is full without counting the spool again (that reads every row)", () => {
    const db = openAgentDb(':memory:');
    const one = Buffer.byteLength(JSON.stringify(alert('a', '2026-01-01T00:00:00Z')));
    // Room for one Cilium alert, not two.
    const outbox = new Spool(db, { maxBytes: one + 10, log });
    const agg = new AlertAggregator(db, outbox, { log });
    let recounts = 0;
    const resync = outbox.resync.bind(outbox);
    outbox.resync = () => {
      recounts++;
      resync();
    };
    // Cilium's alerts fill it, as they do: dropping.
    agg.add([alert('x', '2026-01-01T00:00:00Z', { source: 'cilium' }), alert('y', '2026-01-01T00:00:00Z', { source: 'cilium' })], 0);
    expect(outbox.full).toBe(true);
    const staging = agg.staging('refuse');
    for (let i = 0; i < 3; i++) {
      for (const windowMs of [0, 60_000]) {
        expect(() => agg.add([alert('a', '2026-01-01T00:00:00Z')], windowMs, undefined, 'refuse')).toThrow(SpoolFullError);
        staging.stage([alert('b', '2026-01-01T00:00:00Z')], windowMs);
        expect(() => staging.commit()).toThrow(SpoolFullError);
      }
    }
    expect(recounts).toBe(0);
    expect(outbox.size).toBe(1);
    outbox.remove(outbox.read(0, 10));
    agg.add([alert('a', '2026-01-01T00:00:00Z')], 60_000, undefined, 'refuse');
    expect(sent(outbox).map((a) => a.fingerprint)).toEqual(['a']);
  });

  it('refuses alerts beyond the spool bound and counts them', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 300, log });
    expect(outbox.add([alert('a', 't'), alert('b', 't'), alert('c', 't')])).toBe(1);
    expect(outbox.size).toBe(1);
  });
});

describe('AlertAggregator storage', () => {
  it('leaves a quiet group quiet when a repeat into it cannot be serialised, so later repeats are sent and the database opens again', () => {
    let now = 0;
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    let outbox = new Spool(db, { maxBytes: 1e9, log });
    let agg = new AlertAggregator(db, outbox, { log, now: () => now });
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 1000);
    now = 10;
    expect(() => agg.add([alert('a', '2026-01-01T00:00:02Z', { falco: { n: 1n } as unknown as AlertPayload['falco'] })], 1000)).toThrow(/BigInt/);
    expect(agg.openAlert('a')).toBeUndefined();
    agg.add([alert('a', '2026-01-01T00:00:03Z')], 1000);
    now = 1000;
    expect(agg.flush()).toBe(1);
    expect(outbox.size).toBe(2);
    now = 1100;
    agg.add([alert('a', '2026-01-01T00:00:04Z')], 1000);
    db.close();
    db = openAgentDb(dir);
    outbox = new Spool(db, { maxBytes: 1e9, log });
    agg = new AlertAggregator(db, outbox, { log, now: () => now });
    expect(agg.openAlert('a')?.count).toBe(1);
  });

  it('keeps counts written by small updates across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    // The first is sent at once; more repeats than samples are kept: later ones only touch the small row.
    for (let i = 1; i <= 9; i++) agg.add([alert('a', `2026-01-01T00:00:0${i}Z`)], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).flush(true);
    const a = sent(outbox)[1]!;
    expect(a).toMatchObject({ count: 8, first_seen: '2026-01-01T00:00:02Z', last_seen: '2026-01-01T00:00:09Z', description: 'd 2026-01-01T00:00:02Z' });
    expect(a.samples).toHaveLength(5);
  });
});

describe('AlertAggregator folding (shared/alert/fold.ts)', () => {
  /** Sends a's first occurrence, so that what follows folds. */
  function opened(agg: AlertAggregator): AlertAggregator {
    agg.add([alert('a', '2026-01-01T00:00:00Z', { severity: 'high', title: 'first' })], 60_000);
    return agg;
  }
  /** The alert of the repeats, sent when the window closes. */
  function flushed(agg: AlertAggregator, outbox: Spool): AlertPayload {
    agg.flush(true);
    return sent(outbox).at(-1)!;
  }

  it('keeps the highest severity of a window with the title and description of the occurrence that raised it, not of milder older ones', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = opened(new AlertAggregator(db, outbox, { log }));
    agg.add([alert('a', '2026-01-01T00:00:03Z', { severity: 'low' }), alert('a', '2026-01-01T00:00:02Z', { severity: 'critical', title: 'boom' })], 60_000);
    agg.add(
      [
        alert('a', '2026-01-01T00:00:01Z', { severity: 'info', title: 'calm', description: 'first at 1' }),
        alert('a', '2026-01-01T00:00:01Z', { severity: 'info', title: 'calm', description: 'second at 1' }),
      ],
      60_000,
    );
    // A milder occurrence, older or not, never lends its text to a critical window.
    expect(flushed(agg, outbox)).toMatchObject({
      count: 4,
      severity: 'critical',
      title: 'boom',
      description: 'd 2026-01-01T00:00:02Z',
      first_seen: '2026-01-01T00:00:01Z',
    });
  });

  it('gives a window the text of its first occurrence at the highest severity, however the occurrences were grouped on the way', () => {
    const crit4 = () => alert('a', '2026-01-01T00:00:04Z', { severity: 'critical', title: 'crit@4', labels: { at: '4' } });
    const low1 = () => alert('a', '2026-01-01T00:00:01Z', { severity: 'low', title: 'low@1' });
    const crit2 = () => alert('a', '2026-01-01T00:00:02Z', { severity: 'critical', title: 'crit@2', labels: { at: '2' } });
    const window = (writes: AlertPayload[][], staged: boolean) => {
      const { outbox, agg } = aggregatorAt(() => 0);
      agg.add([alert('a', '2026-01-01T00:00:00Z', { severity: 'info' })], 60_000);
      const staging = agg.staging();
      for (const w of writes) {
        if (!staged) agg.add(w, 60_000);
        else {
          // A source storing its own events (Falco's inbox) folds a commit's events before they join the group.
          staging.stage(w, 60_000);
          staging.commit();
        }
      }
      agg.flush(true);
      return sent(outbox).at(-1)!;
    };
    const want = { count: 3, title: 'crit@4', labels: { at: '4' }, first_seen: '2026-01-01T00:00:01Z' };
    expect(window([[crit4()], [low1()], [crit2()]], false)).toMatchObject(want);
    expect(window([[crit4()], [low1()], [crit2()]], true)).toMatchObject(want);
    expect(window([[crit4()], [low1(), crit2()]], true)).toMatchObject(want);
    expect(window([[crit4(), low1(), crit2()]], true)).toMatchObject(want);
  });

  it('keeps severity and title of repeats across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = opened(new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log }));
    agg.add([alert('a', '2026-01-01T00:00:02Z', { severity: 'low' })], 60_000);
    // Older and more severe, arriving late: it brings both its severity and its title.
    agg.add([alert('a', '2026-01-01T00:00:01Z', { severity: 'critical', title: 'boom' })], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    expect(flushed(new AlertAggregator(db, outbox, { log }), outbox)).toMatchObject({ count: 2, severity: 'critical', title: 'boom' });
  });

  it('keeps the labels that moved with the title of the occurrence that raised the severity across a restart', () => {
    const notice = (t: string) => alert('a', t, { severity: 'low', title: 'calm', labels: { priority: 'Notice' } });
    const critical = (t: string) => alert('a', t, { severity: 'critical', title: 'boom', labels: { priority: 'Critical' } });
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    agg.add([notice('2026-01-01T00:00:00Z')], 60_000);
    agg.add([notice('2026-01-01T00:00:01Z')], 60_000);
    agg.add([critical('2026-01-01T00:00:02Z')], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const again = new AlertAggregator(db, outbox, { log });
    again.flush(true);
    expect(sent(outbox).at(-1)).toMatchObject({ count: 2, severity: 'critical', title: 'boom', labels: { priority: 'Critical' } });
  });

  it('keeps moved labels when a later write fails and the group is read back, and when the move came in the payload’s own write', () => {
    const notice = (t: string) => alert('a', t, { severity: 'low', title: 'calm', labels: { priority: 'Notice' } });
    const critical = (t: string) => alert('a', t, { severity: 'critical', title: 'boom', labels: { priority: 'Critical' } });
    const { outbox, agg } = aggregatorAt(() => 0);
    agg.add([notice('2026-01-01T00:00:00Z')], 60_000);
    // One write gives the group its payload (serialised with the Notice labels) and raises it.
    agg.add([notice('2026-01-01T00:00:01Z'), critical('2026-01-01T00:00:02Z')], 60_000);
    expect(() =>
      agg.add([notice('2026-01-01T00:00:03Z')], 60_000, () => {
        throw new Error('disk full');
      }),
    ).toThrow('disk full');
    expect(agg.openAlert('a')).toMatchObject({ count: 2, title: 'boom', labels: { priority: 'Critical' } });
    agg.flush(true);
    expect(sent(outbox).at(-1)).toMatchObject({ count: 2, severity: 'critical', labels: { priority: 'Critical' } });
  });

  it('keeps labels moved by a staged commit (a source storing its own events) across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    const staging = agg.staging();
    staging.stage([alert('a', '2026-01-01T00:00:00Z', { severity: 'low', labels: { priority: 'Notice' } })], 60_000);
    staging.commit();
    staging.stage([alert('a', '2026-01-01T00:00:01Z', { severity: 'low', labels: { priority: 'Notice' } })], 60_000);
    staging.commit();
    staging.stage([alert('a', '2026-01-01T00:00:02Z', { severity: 'critical', title: 'boom', labels: { priority: 'Critical' } })], 60_000);
    staging.commit();
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).flush(true);
    expect(sent(outbox).at(-1)).toMatchObject({ count: 2, severity: 'critical', title: 'boom', labels: { priority: 'Critical' } });
  });

  it('sends the sample of the occurrence that raised the severity when all places are taken, also after a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = opened(new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log }));
    for (let i = 1; i <= 7; i++) agg.add([alert('a', `2026-01-01T00:00:0${i}Z`, { severity: 'low' })], 60_000);
    agg.add([alert('a', '2026-01-01T00:00:08Z', { severity: 'critical' })], 60_000);
    agg.add([alert('a', '2026-01-01T00:00:09Z', { severity: 'low' })], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const a = flushed(new AlertAggregator(db, outbox, { log }), outbox);
    expect(a.severity).toBe('critical');
    expect(a.samples).toEqual(['01', '02', '03', '04', '08'].map((s) => ({ t: `2026-01-01T00:00:${s}Z` })));
  });
});

describe('AlertAggregator staging', () => {
  function marker(db: ReturnType<typeof openAgentDb>) {
    db.exec('CREATE TABLE IF NOT EXISTS source_mark (n INTEGER)');
    return {
      write: () => db.prepare('INSERT INTO source_mark (n) VALUES (1)').run(),
      count: () => (db.prepare('SELECT count(*) AS n FROM source_mark').get() as { n: number }).n,
    };
  }
  const rows = (db: ReturnType<typeof openAgentDb>) => (db.prepare('SELECT count(*) AS n FROM pending_alerts').get() as { n: number }).n;

  it("folds staged occurrences in memory and writes them with the source's own record in one transaction, sending new ones in it", () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    const mark = marker(db);
    const staging = agg.staging();
    staging.stage([alert('a', '2026-01-01T00:00:01Z'), alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')], 60_000);
    expect(staging.size).toBe(3);
    expect(agg.pending).toBe(2);
    expect(rows(db)).toBe(0);
    expect(outbox.size).toBe(0);
    staging.commit(mark.write);
    expect(mark.count()).toBe(1);
    expect(staging.size).toBe(0);
    // New fingerprints: sent by the commit, their groups stored quiet.
    expect(sent(outbox).map((r) => [r.fingerprint, r.count])).toEqual([
      ['a', 2],
      ['b', 1],
    ]);
    expect(rows(db)).toBe(2);
    // Another source's add() writes only its own occurrences; a group waits for its staged ones.
    staging.stage([alert('a', '2026-01-01T00:00:04Z')], 60_000);
    agg.add([alert('c', '2026-01-01T00:00:05Z')], 60_000);
    expect(mark.count()).toBe(1);
    expect(outbox.size).toBe(3);
    // b and c passed their windows quiet; a waits.
    expect(agg.flush(true)).toBe(0);
    expect(agg.pending).toBe(1);
    staging.commit(mark.write);
    staging.stage([alert('direct', 't')], 0);
    expect(outbox.size).toBe(3);
    staging.commit(mark.write);
    expect(outbox.size).toBe(4);
    expect(agg.flush(true)).toBe(1);
    expect(sent(outbox).map((r) => [r.fingerprint, r.count])).toEqual([
      ['a', 2],
      ['b', 1],
      ['c', 1],
      ['direct', 1],
      ['a', 1],
    ]);
  });

  it('sends a staged occurrence of a new fingerprint at the commit, and after a quiet window again', () => {
    let now = 0;
    const { outbox, agg } = aggregatorAt(() => now);
    const staging = agg.staging();
    staging.stage([alert('a', '2026-01-01T00:00:00Z', { severity: 'critical' })], 1000);
    staging.commit();
    expect(sent(outbox)).toMatchObject([{ fingerprint: 'a', count: 1, severity: 'critical' }]);
    // A repeat inside the window: bump() leaves it to stage() (its payload starts the group afresh), and it waits.
    now = 500;
    expect(staging.bump('a', '2026-01-01T00:00:01Z', 'low', 1000)).toBe(false);
    staging.stage([alert('a', '2026-01-01T00:00:01Z', { severity: 'low' })], 1000);
    staging.stage([alert('a', '2026-01-01T00:00:02Z', { severity: 'low' })], 1000);
    staging.commit();
    expect(outbox.size).toBe(1);
    now = 1000;
    expect(agg.flush()).toBe(1);
    now = 2000;
    expect(agg.flush()).toBe(0);
    now = 2500;
    staging.stage([alert('a', '2026-01-01T00:00:03Z', { severity: 'medium' })], 1000);
    staging.commit();
    expect(sent(outbox).map((r) => [r.count, r.severity])).toEqual([
      [1, 'critical'],
      [2, 'low'],
      [1, 'medium'],
    ]);
  });

  it('folds by bump() exactly what stage() would, and leaves to stage() the occurrences whose payload counts', () => {
    let seed = 3;
    const r = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const severities = ['low', 'medium', 'high', 'critical'] as const;
    const run = (useBump: boolean) => {
      const db = openAgentDb(':memory:');
      const outbox = new Spool(db, { maxBytes: 1e9, log });
      const agg = new AlertAggregator(db, outbox, { log });
      const staging = agg.staging();
      let bumped = 0;
      for (let i = 0; i < 3000; i++) {
        const fp = `f${Math.floor(r() * 4)}`;
        const t = `2026-01-01T00:${String(10 + Math.floor(i / 60) - (r() < 0.1 ? 5 : 0)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}Z`;
        const severity = severities[r() < 0.9 ? 1 : Math.floor(r() * 4)]!;
        const occ = alert(fp, t, { severity, title: `t ${i}`, samples: [{ i }] });
        if (useBump && staging.bump(fp, t, severity, 60_000)) bumped++;
        else staging.stage([occ], 60_000);
        if (r() < 0.05) staging.commit();
        if (r() < 0.01) agg.flush(true);
      }
      staging.commit();
      agg.flush(true);
      return { sent: outbox.read(0, 1000).map((row) => JSON.parse(row.payload.toString()) as AlertPayload), bumped };
    };
    const staged = run(false);
    seed = 3;
    const bumped = run(true);
    expect(bumped.bumped).toBeGreaterThan(2000);
    expect(bumped.sent).toEqual(staged.sent);
  });

  it("forgets staged occurrences when their transaction fails, the source's record with them", () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    const mark = marker(db);
    const staging = agg.staging();
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 60_000);
    staging.stage([alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')], 60_000);
    db.exec("CREATE TEMP TRIGGER fail BEFORE UPDATE ON pending_alert_counts BEGIN SELECT RAISE(FAIL, 'disk full'); END");
    expect(() => staging.commit(mark.write)).toThrow('disk full');
    expect(staging.size).toBe(0);
    expect(agg.pending).toBe(1);
    expect(mark.count()).toBe(0);
    db.exec('DROP TRIGGER fail');
    // a is quiet still: the source stages its occurrence again, and it starts the group afresh.
    staging.stage([alert('a', '2026-01-01T00:00:02Z', { severity: 'low' })], 60_000);
    staging.commit(mark.write);
    expect(outbox.size).toBe(1);
    agg.flush(true);
    expect(sent(outbox).map((r) => [r.fingerprint, r.count, r.severity])).toEqual([
      ['a', 1, 'high'],
      ['a', 1, 'low'],
    ]);
  });

  it('reads groups stored by the first table layout (counts and samples in the payload row)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    migrate(db, 'pending_alerts', [
      `CREATE TABLE pending_alerts (fingerprint TEXT PRIMARY KEY, payload BLOB NOT NULL, closes_at INTEGER NOT NULL, count INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, description TEXT NOT NULL)`,
    ]);
    const old = { ...alert('a', '2026-01-01T00:00:01Z'), samples: [{ s: 1 }, { s: 2 }] };
    db.prepare('INSERT INTO pending_alerts VALUES (?, ?, ?, ?, ?, ?, ?)').run(
      'a',
      Buffer.from(JSON.stringify(old)),
      Date.now() + 60_000,
      7,
      '2026-01-01T00:00:00Z',
      '2026-01-01T00:00:09Z',
      'latest',
    );
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    agg.add([alert('a', '2026-01-01T00:00:10Z')], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox2 = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox2, { log }).flush(true);
    const a = JSON.parse(outbox2.read(0, 10)[0]!.payload.toString()) as AlertPayload;
    expect(a).toMatchObject({ count: 8, first_seen: '2026-01-01T00:00:00Z', last_seen: '2026-01-01T00:00:10Z', description: 'latest' });
    expect(a.samples).toEqual([{ s: 1 }, { s: 2 }, { t: '2026-01-01T00:00:10Z' }]);
  });
});
