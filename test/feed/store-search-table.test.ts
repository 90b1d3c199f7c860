import { describe, expect, it } from 'vitest';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { SERVER_MIGRATIONS } from '../../src/server/store/server-db.js';
import { ciliumPayload, falcoPayload } from '../../src/server/store/test-payloads.js';
import { migrate, openDatabase } from '../../src/shared/sqlite/open.js';

// search_text lives in its own narrow table (alert_search, migration 5), not in
// the alert's wide text row; the full-text index reads both through a view. Since
// migration 7 it keeps the text the alert opened with, and a repeat that brings a
// new label value appends that value to alerts_fts_added instead.

const ftsIds = (db: ReturnType<typeof openDatabase>, q: string) =>
  (db.prepare('SELECT rowid AS id FROM alerts_fts WHERE alerts_fts MATCH ? ORDER BY rowid').all(q) as { id: number }[]).map((r) => r.id);

describe('the searchable text table', () => {
  it('moves search_text of a version 4 database to alert_search and rebuilds the index from it', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS.slice(0, 4));
    // Rows as version 4's ingest wrote them (its code is gone): search_text in alert_text.
    db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, last_received_at, seq)
      VALUES (1, 'old', 'edge', 'triggered', 'falco', 'high', 3, 'prod', 'shop', 'Terminal shell in container', 1, 1, 1000, 1000, 1000, 1000, 1000, 1)`).run();
    db.prepare(
      `INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (1, 'shell in web', 'a shell', '[]', '{}', '{}', ?)`,
    ).run('shop\n\nTerminal shell in container\nquokka-pod');
    db.prepare('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (1, ?, ?, ?)').run(
      'shell in web',
      'a shell',
      'shop\n\nTerminal shell in container\nquokka-pod',
    );
    migrate(db, 'server', SERVER_MIGRATIONS);
    expect(db.prepare('SELECT search_text FROM alert_search WHERE id = 1').get()).toEqual({ search_text: 'shop\n\nTerminal shell in container\nquokka-pod' });
    expect(ftsIds(db, 'quokka')).toEqual([1]);
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    // A repeat continues the migrated text: its new pod is searchable, the old one still is.
    const store = new AlertStore(db);
    store.ingest('edge', [{ id: 'r-1', payload: falcoPayload({ fp: 'old', pod: 'numbat-pod' }) }]);
    expect(store.list({ limit: 10, q: 'numbat' }).alerts.map((a) => a.id)).toEqual([1]);
    expect(store.list({ limit: 10, q: 'quokka' }).alerts.map((a) => a.id)).toEqual([1]);
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    db.close();
  });

  it('keeps in alert_search the text the alert opened with; new label values are appended to alerts_fts_added, and purge removes both', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS);
    const store = new AlertStore(db);
    const a = store.ingest('edge', [{ id: 'a-0', payload: ciliumPayload({ fp: 'grow', srcPod: 'frontend-aaa' }) }]).alerts[0]!;
    const textRow = () => db.prepare('SELECT title, description, policies, labels, details, search_text FROM alert_text WHERE id = ?').get(a.id);
    const searchRow = () => db.prepare('SELECT search_text FROM alert_search WHERE id = ?').get(a.id) as { search_text: string };
    const before = textRow();
    const opened = searchRow();
    for (let i = 0; i < 5; i++) store.ingest('edge', [{ id: `a-${i + 1}`, payload: ciliumPayload({ fp: 'grow', srcPod: `frontend-p${i}` }) }]);
    // The wide row and the search row are written once, when the alert opens.
    expect(textRow()).toEqual(before);
    expect((textRow() as { search_text: string }).search_text).toBe('');
    expect(searchRow()).toEqual(opened);
    expect(opened.search_text.split('\n')).toContain('frontend-aaa');
    const added = (db.prepare('SELECT value FROM alerts_fts_added ORDER BY rowid').all() as { value: string }[]).map((r) => r.value);
    expect(added).toEqual(expect.arrayContaining(['frontend-p0', 'frontend-p1', 'frontend-p2', 'frontend-p3', 'frontend-p4']));
    expect(added.filter((v) => opened.search_text.split('\n').includes(v))).toEqual([]);
    expect(store.list({ limit: 10, q: 'frontend-p3' }).alerts.map((x) => x.id)).toEqual([a.id]);
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    // A fresh store (a restart) continues the text from alert_search and alerts_fts_added.
    const again = new AlertStore(db);
    again.ingest('edge', [{ id: 'a-9', payload: ciliumPayload({ fp: 'grow', srcPod: 'frontend-late' }) }]);
    expect(again.list({ limit: 10, q: 'frontend-late' }).alerts.map((x) => x.id)).toEqual([a.id]);
    expect(again.list({ limit: 10, q: 'frontend-aaa' }).alerts.map((x) => x.id)).toEqual([a.id]);
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    again.purgeStep({ maxAgeMs: 1, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100, Date.now() + 180_000);
    expect(db.prepare('SELECT count(*) AS n FROM alert_search').get()).toEqual({ n: 0 });
    expect(db.prepare('SELECT count(*) AS n FROM alerts_fts_added').get()).toEqual({ n: 0 });
    expect(ftsIds(db, 'frontend')).toEqual([]);
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    db.close();
  });
});
