import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ALERT_SCHEMA, type AlertPayload } from '../../shared/alert/payload.js';
import { openAgentDb } from '../spool/agent-db.js';
import { Spool } from '../spool/spool.js';
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

describe('AlertAggregator', () => {
  it('folds repeats inside the window into one alert with count and first/last seen', () => {
    let now = 0;
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log, now: () => now });
    agg.add([alert('a', '2026-01-01T00:00:02Z'), alert('a', '2026-01-01T00:00:01Z'), alert('b', '2026-01-01T00:00:03Z')], 1000);
    agg.add([alert('a', '2026-01-01T00:00:05Z')], 1000);
    expect(agg.flush()).toBe(0);
    now = 1000;
    expect(agg.flush()).toBe(2);
    const rows = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    const a = rows.find((r) => r.fingerprint === 'a')!;
    expect(a.count).toBe(3);
    expect(a.first_seen).toBe('2026-01-01T00:00:01Z');
    expect(a.last_seen).toBe('2026-01-01T00:00:05Z');
    expect(a.description).toBe('d 2026-01-01T00:00:01Z');
    expect(a.samples).toHaveLength(3);
    expect(agg.pending).toBe(0);
  });

  it('adds nothing of a batch in which one occurrence cannot be serialised, so the batch can be added again without counting twice', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    agg.add([alert('a', '2026-01-01T00:00:01Z')], 60_000);
    const batch = () => [alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')];
    // JSON.stringify throws on a BigInt, as it does on a value nested too deep for the stack.
    expect(() => agg.add([...batch(), alert('c', '2026-01-01T00:00:04Z', { samples: [{ n: 1n }] })], 60_000)).toThrow(TypeError);
    agg.add(batch(), 60_000);
    expect(agg.flush(true)).toBe(2);
    const rows = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    expect(Object.fromEntries(rows.map((r) => [r.fingerprint, [r.count, r.samples.length]]))).toEqual({ a: [2, 2], b: [1, 1] });
  });

  it('keeps pending groups across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    let agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    agg.add([alert('a', '2026-01-01T00:00:01Z'), alert('a', '2026-01-01T00:00:02Z')], 60_000);
    db.close(); // the process dies with the window still open
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    agg = new AlertAggregator(db, outbox, { log });
    expect(agg.pending).toBe(1);
    agg.flush(true);
    const [row] = outbox.read(0, 10);
    expect((JSON.parse(row!.payload.toString()) as AlertPayload).count).toBe(2);
  });

  it('passes alerts straight to the spool with a zero window', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).add([alert('a', 't'), alert('a', 't')], 0);
    expect(outbox.size).toBe(2);
  });

  it('refuses alerts beyond the spool bound and counts them', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 300, log });
    expect(outbox.add([alert('a', 't'), alert('b', 't'), alert('c', 't')])).toBe(1);
    expect(outbox.size).toBe(1);
  });
});

describe('AlertAggregator storage', () => {
  it('keeps counts written by small updates across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    // More repeats than samples are kept: later ones only touch the small row.
    for (let i = 1; i <= 9; i++) agg.add([alert('a', `2026-01-01T00:00:0${i}Z`)], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    new AlertAggregator(db, outbox, { log }).flush(true);
    const a = JSON.parse(outbox.read(0, 10)[0]!.payload.toString()) as AlertPayload;
    expect(a).toMatchObject({ count: 9, first_seen: '2026-01-01T00:00:01Z', last_seen: '2026-01-01T00:00:09Z', description: 'd 2026-01-01T00:00:01Z' });
    expect(a.samples).toHaveLength(5);
  });
});

describe('AlertAggregator folding (shared/alert/fold.ts)', () => {
  function flushed(agg: AlertAggregator, outbox: Spool): AlertPayload {
    agg.flush(true);
    return JSON.parse(outbox.read(0, 10)[0]!.payload.toString()) as AlertPayload;
  }

  it('keeps the highest severity of a window, the title and description of the earliest occurrence, and on equal times the earlier arrival', () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    agg.add([alert('a', '2026-01-01T00:00:03Z', { severity: 'low' }), alert('a', '2026-01-01T00:00:02Z', { severity: 'critical', title: 'boom' })], 60_000);
    agg.add(
      [
        alert('a', '2026-01-01T00:00:01Z', { severity: 'info', title: 'calm', description: 'first at 1' }),
        alert('a', '2026-01-01T00:00:01Z', { severity: 'info', title: 'calm', description: 'second at 1' }),
      ],
      60_000,
    );
    expect(flushed(agg, outbox)).toMatchObject({ count: 4, severity: 'critical', title: 'calm', description: 'first at 1' });
  });

  it('keeps severity and title of repeats across a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
    agg.add([alert('a', '2026-01-01T00:00:02Z', { severity: 'low' })], 60_000);
    // Older and more severe, arriving late: it brings both its severity and its title.
    agg.add([alert('a', '2026-01-01T00:00:01Z', { severity: 'critical', title: 'boom' })], 60_000);
    db.close();
    db = openAgentDb(dir);
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    expect(flushed(new AlertAggregator(db, outbox, { log }), outbox)).toMatchObject({ count: 2, severity: 'critical', title: 'boom' });
  });

  it('sends the sample of the occurrence that raised the severity when all places are taken, also after a restart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agg-'));
    let db = openAgentDb(dir);
    const agg = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log }), { log });
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

  it("folds staged occurrences in memory and writes them with the source's own record in one transaction", () => {
    const db = openAgentDb(':memory:');
    const outbox = new Spool(db, { maxBytes: 1e9, log });
    const agg = new AlertAggregator(db, outbox, { log });
    const mark = marker(db);
    const staging = agg.staging();
    staging.stage([alert('a', '2026-01-01T00:00:01Z'), alert('a', '2026-01-01T00:00:02Z'), alert('b', '2026-01-01T00:00:03Z')], 60_000);
    expect(staging.size).toBe(3);
    expect(agg.pending).toBe(2);
    expect(rows(db)).toBe(0);
    staging.commit(mark.write);
    expect(mark.count()).toBe(1);
    expect(staging.size).toBe(0);
    expect(rows(db)).toBe(2);
    // Another source's add() writes only its own occurrences; a group waits for its staged ones.
    staging.stage([alert('a', '2026-01-01T00:00:04Z')], 60_000);
    agg.add([alert('c', '2026-01-01T00:00:05Z')], 60_000);
    expect(mark.count()).toBe(1);
    expect(agg.flush(true)).toBe(2);
    staging.commit(mark.write);
    staging.stage([alert('direct', 't')], 0);
    expect(outbox.size).toBe(2);
    staging.commit(mark.write);
    expect(outbox.size).toBe(3);
    agg.flush(true);
    const sent = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    expect(Object.fromEntries(sent.map((r) => [r.fingerprint, r.count]))).toEqual({ direct: 1, a: 3, b: 1, c: 1 });
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
    agg.flush(true);
    const [row] = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    expect(row).toMatchObject({ fingerprint: 'a', count: 1 });
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
