import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrate, openDatabase } from '../../shared/sqlite/open.js';
import { AlertStore, OCCURRENCES_KEPT } from './alert-store.js';
import { openServerDb, SERVER_MIGRATIONS } from './server-db.js';
import { ciliumPayload } from './test-payloads.js';

// The server database across versions: released migrations upgrade old stores,
// and statistics that would mislead the query planner are dropped.

let ev = 0;
const id = () => `db-ev-${++ev}`;

describe('server schema upgrades', () => {
  it('moves the occurrence ring of a version 1 database into the rowid table, and keeps ring order and cascades', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS.slice(0, 1));
    // A wrapped ring as version 1 held it: events 0..24 of one alert, slot = n mod 20.
    db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, seq)
      VALUES (1, 'ring', 'edge', 'triggered', 'cilium', 'medium', 2, 'prod', 'shop', '', 25, 25, 1000, 2000, 1000, 2000, 25)`).run();
    db.prepare(`INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (1, 't', 'd', '[]', '{}', '{}', '')`).run();
    db.prepare(`INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (1, 't', 'd', '')`).run();
    const put =
      db.prepare(`INSERT OR REPLACE INTO alert_occurrences (alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples)
      VALUES (1, ?, ?, ?, 1000, ?, 1000, 1000, 'medium', NULL, NULL, ?)`);
    for (let n = 0; n < OCCURRENCES_KEPT + 5; n++) put.run(n % OCCURRENCES_KEPT, n, `e${n}`, n + 1, JSON.stringify([{ n }]));
    migrate(db, 'server', SERVER_MIGRATIONS);
    expect((db.prepare("SELECT sql FROM sqlite_master WHERE name = 'alert_occurrences'").get() as { sql: string }).sql).not.toContain('WITHOUT ROWID');
    const store = new AlertStore(db);
    const was = store.detail(1)!.occurrences;
    expect(was.map((o) => o.event_no)).toEqual(Array.from({ length: OCCURRENCES_KEPT }, (_, i) => OCCURRENCES_KEPT + 4 - i));
    expect(store.get(1)!.samples).toEqual([20, 21, 22, 23, 24].map((n) => ({ n })));
    store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'ring', count: 99 }) }]);
    const occ = store.detail(1)!.occurrences;
    expect(occ).toHaveLength(OCCURRENCES_KEPT);
    expect(occ.map((o) => o.count).slice(0, 2)).toEqual([99, OCCURRENCES_KEPT + 5]);
    store.purgeStep({ maxAgeMs: 1, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100, Date.now() + 180_000);
    expect((db.prepare('SELECT count(*) AS n FROM alert_occurrences').get() as { n: number }).n).toBe(0);
  });
});

describe('planner statistics', () => {
  it('drops statistics taken of a near-empty store, so alert lookups keep using their indexes', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-stats-'));
    let db = openServerDb(dir);
    let store = new AlertStore(db);
    store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'one' }) }]);
    // What a `PRAGMA optimize` at start-up recorded before: every table a row or two.
    db.exec('ANALYZE');
    expect(store.refreshPlannerStats()).toBe(false);
    const plan = (d: typeof db) => JSON.stringify(d.prepare('EXPLAIN QUERY PLAN DELETE FROM alert_occurrences WHERE alert_id = 1').all());
    db.close();
    db = openServerDb(dir);
    store = new AlertStore(db);
    expect(db.prepare('SELECT count(*) AS n FROM sqlite_stat1').get()).toEqual({ n: 0 });
    expect(plan(db)).toContain('alert_occurrences_slot');
    expect(store.get(1)?.fingerprint).toBe('one');
    db.close();
  });
});
