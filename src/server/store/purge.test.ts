import { afterEach, describe, expect, it, vi } from 'vitest';
import { migrate, openDatabase } from '../../shared/sqlite/open.js';
import { AlertStore } from './alert-store.js';
import { openServerDb, SERVER_MIGRATIONS } from './server-db.js';
import { ciliumPayload, falcoPayload } from './test-payloads.js';

// What retention deletes (AlertStore.purgeStep, purge.ts) and by which clock;
// retention.test.ts covers the timer that runs it.

let ev = 0;
const id = () => `purge-${++ev}`;

function fresh() {
  const db = openServerDb(':memory:');
  return { db, store: new AlertStore(db) };
}

/** Runs `fn` as if the server's clock read `ms` (ingest stamps receipts with Date.now()). */
function at<T>(ms: number, fn: () => T): T {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(ms);
  try {
    return fn();
  } finally {
    vi.useRealTimers();
  }
}

describe('AlertStore retention', () => {
  afterEach(() => vi.useRealTimers());

  it('deletes alerts past the maximum age with everything that belongs to them', () => {
    const { store, db } = fresh();
    const now = Date.UTC(2024, 5, 1);
    const old = new Date(now - 40 * 86400_000).toISOString();
    const recent = new Date(now - 86400_000).toISOString();
    const [a] = at(now - 40 * 86400_000, () => store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'old', time: old }) }]).alerts);
    at(now - 39 * 86400_000, () => store.setStatus(a!.id, 'acknowledged', 'x'));
    at(now - 86400_000, () => store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'new', time: recent }) }]));
    const r = store.purgeStep({ maxAgeMs: 30 * 86400_000, maxRows: 1000, eventIdMaxAgeMs: 86400_000, maxEventIds: 1000 }, 100, now);
    expect(r.alerts).toBe(1);
    expect(store.list({ limit: 10 }).alerts.map((x) => x.fingerprint)).toEqual(['new']);
    for (const t of ['alert_occurrences', 'alert_status_changes', 'alert_policies']) {
      expect((db.prepare(`SELECT count(*) AS n FROM ${t} WHERE alert_id = ?`).get(a!.id) as { n: number }).n, t).toBe(0);
    }
    expect(db.prepare('SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?').all('frontend')).toHaveLength(1);
    // The purged alert's fingerprint starts over as a new alert.
    const [b] = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'old' }) }]).alerts;
    expect(b!.id).toBeGreaterThan(a!.id);
    expect(b!.count).toBe(1);
  });

  it('ages alerts by when they were received, not by the time written in their events', () => {
    const { store } = fresh();
    const yearAgo = new Date(Date.now() - 365 * 86400_000).toISOString();
    const [backfill] = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'backfill', time: yearAgo }) }]).alerts;
    const hour = { maxAgeMs: 3_600_000, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 };
    expect(store.purgeStep(hour)).toMatchObject({ alerts: 0 });
    // Shown as the event gives it.
    expect(store.get(backfill!.id)).toMatchObject({ first_seen: yearAgo, last_seen: yearAgo });
    expect(store.get(backfill!.id)!.clock_skew).toBeUndefined();
    // Received more than max_age ago: purged, whatever its events say.
    expect(store.purgeStep(hour, 2000, Date.now() + 2 * 3_600_000)).toMatchObject({ alerts: 1 });
    expect(store.get(backfill!.id)).toBeUndefined();
  });

  it('takes the receipt time an event comes with (a Kafka replica projecting what another received)', () => {
    const { store } = fresh();
    const now = Date.now();
    const [a] = store.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'projected', time: new Date(now).toISOString() }), receivedAt: now - 2 * 3_600_000 },
    ]).alerts;
    expect(a!.last_received_at).toBe(new Date(now - 2 * 3_600_000).toISOString());
    expect(store.purgeStep({ maxAgeMs: 3_600_000, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 })).toMatchObject({ alerts: 1 });
  });

  it('keeps an alert that still receives events, and moves its receipt at most once a minute', () => {
    const { store } = fresh();
    const t0 = Date.UTC(2025, 0, 1);
    const old = new Date(t0 - 365 * 86400_000).toISOString();
    const send = (ms: number) => at(ms, () => store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'busy', time: old }) }]).alerts[0]!);
    const a = send(t0);
    expect(send(t0 + 30_000).last_received_at).toBe(new Date(t0).toISOString());
    expect(send(t0 + 3_600_000).last_received_at).toBe(new Date(t0 + 3_600_000).toISOString());
    const hour = { maxAgeMs: 3_600_000, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 };
    expect(store.purgeStep(hour, 2000, t0 + 2 * 3_600_000)).toMatchObject({ alerts: 0 });
    expect(store.purgeStep(hour, 2000, t0 + 3 * 3_600_000)).toMatchObject({ alerts: 1 });
    expect(store.get(a.id)).toBeUndefined();
  });

  it('keeps timestamps far in the future as given, and flags the alert', () => {
    const { store } = fresh();
    const now = Date.now();
    const ahead = new Date(now + 86400_000).toISOString();
    const [fast] = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'fast', time: ahead }) }]).alerts;
    const [fine] = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'fine', time: new Date(now + 60_000).toISOString() }) }]).alerts;
    expect(fast).toMatchObject({ last_seen: ahead, clock_skew: true });
    expect(store.get(fast!.id)).toMatchObject({ last_seen: ahead, clock_skew: true });
    expect(store.list({ limit: 10 }).alerts.find((x) => x.id === fast!.id)!.clock_skew).toBe(true);
    expect(fine!.clock_skew).toBeUndefined();
    // A later occurrence with a sane clock does not clear it: the alert's times still hold the fast one.
    const [again] = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'fast' }) }]).alerts;
    expect(again).toMatchObject({ last_seen: ahead, clock_skew: true });
    const [late] = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'fine', time: ahead }) }]).alerts;
    expect(late).toMatchObject({ id: fine!.id, clock_skew: true });
    expect(store.get(fine!.id)!.clock_skew).toBe(true);
  });

  it('keeps at most max_rows alerts by receipt: the least recently received go first, whatever their events say', () => {
    const { store } = fresh();
    const now = Date.now();
    at(now - 2 * 3_600_000, () => store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'early' }) }]));
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'backfill', time: new Date(now - 365 * 86400_000).toISOString() }) }]);
    expect(store.purgeStep({ maxAgeMs: 1e15, maxRows: 1, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 })).toMatchObject({ alerts: 1 });
    expect(store.list({ limit: 10 }).alerts.map((x) => x.fingerprint)).toEqual(['backfill']);
  });

  it('keeps at most max_rows alerts, least recently received go first, in bounded steps', () => {
    const { store } = fresh();
    const batch = [];
    for (let i = 0; i < 50; i++) batch.push({ id: id(), payload: ciliumPayload({ fp: `f${i}`, time: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString() }) });
    store.ingest('edge', batch);
    const limits = { maxAgeMs: 1e15, maxRows: 20, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 };
    expect(store.purgeStep(limits, 10)).toMatchObject({ alerts: 10, more: true });
    expect(store.purgeStep(limits, 10)).toMatchObject({ alerts: 10, more: true });
    expect(store.purgeStep(limits, 10)).toMatchObject({ alerts: 10, more: false });
    expect(store.purgeStep(limits, 10)).toMatchObject({ alerts: 0, more: false });
    const left = store.list({ limit: 100, order: 'asc' }).alerts;
    expect(left).toHaveLength(20);
    expect(left[0]!.fingerprint).toBe('f30');
  });

  it('trims event ids by age and by count', () => {
    const { store, db } = fresh();
    for (let i = 0; i < 30; i++) store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]);
    const n = () => (db.prepare('SELECT count(*) AS n FROM alert_events').get() as { n: number }).n;
    store.purgeStep({ maxAgeMs: 1e15, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 12 }, 100, Date.now() + 1);
    expect(n()).toBe(12);
    store.purgeStep({ maxAgeMs: 1e15, maxRows: 1e9, eventIdMaxAgeMs: 1000, maxEventIds: 1e9 }, 100, Date.now() + 5000);
    expect(n()).toBe(0);
  });

  it('keeps event ids an agent may still re-send, however many there are', () => {
    const { store, db } = fresh();
    const n = () => (db.prepare('SELECT count(*) AS n FROM alert_events').get() as { n: number }).n;
    const sent = Array.from({ length: 30 }, () => ({ id: id(), payload: ciliumPayload() }));
    store.ingest('edge', sent);
    const limits = { maxAgeMs: 1e15, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 12, eventIdMinAgeMs: 15 * 60_000 };
    expect(store.purgeStep(limits, 100)).toMatchObject({ eventIds: 0, more: false });
    expect(n()).toBe(30);
    // A re-send within that time is still recognised.
    expect(store.ingest('edge', sent).duplicates).toBe(30);
    store.purgeStep(limits, 100, Date.now() + 16 * 60_000);
    expect(n()).toBe(12);
  });
});

describe('server schema upgrades: receipt times', () => {
  it('gives alerts stored before receipt times their latest update as last received', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS.slice(0, 2));
    db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, seq)
      VALUES (1, 'fp', 'edge', 'triggered', 'falco', 'high', 3, 'prod', 'shop', 'r', 1, 1, 1000, 1000, 5000, 7000, 1)`).run();
    db.prepare(`INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (1, 't', 'd', '[]', '{}', '{}', '')`).run();
    migrate(db, 'server', SERVER_MIGRATIONS);
    expect(new AlertStore(db).get(1)).toMatchObject({ last_seen: new Date(1000).toISOString(), last_received_at: new Date(7000).toISOString() });
  });
});
