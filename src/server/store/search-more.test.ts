import { describe, expect, it } from 'vitest';
import { migrate, openDatabase, type DB } from '../../shared/sqlite/open.js';
import { toFtsQuery } from './alert-query.js';
import { AlertStore } from './alert-store.js';
import { SERVER_MIGRATIONS } from './server-db.js';
import { ciliumPayload, falcoPayload } from './test-payloads.js';

// Label values that repeats bring are indexed in alerts_fts_more, not by
// re-indexing the alert's main full-text row (migration 6): a search must not
// tell the two apart, and both indexes must stay in step with their text.

let ev = 0;
const id = () => `more-${++ev}`;

function checkIndexes(db: DB): void {
  db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')");
  db.exec("INSERT INTO alerts_fts_more (alerts_fts_more) VALUES ('integrity-check')");
}

function fresh() {
  const db = openDatabase(':memory:');
  migrate(db, 'server', SERVER_MIGRATIONS);
  return { db, store: new AlertStore(db) };
}

const found = (store: AlertStore, q: string) =>
  store
    .list({ limit: 50, q })
    .alerts.map((a) => a.id)
    .sort();

describe('values added after an alert opened', () => {
  it('are found by list, by the list driver and by matchingText, alone and with words of the main text', () => {
    const { db, store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'grow', srcPod: 'wombat-1' }) }]).alerts[0]!;
    const b = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'other', ns: 'db', srcPod: 'wombat-2' }) }]).alerts[0]!;
    store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'grow', srcPod: 'quokka-7' }) }]);
    store.ingest('edge', [{ id: id(), payload: ciliumPayload({ fp: 'grow', srcPod: 'numbat-3' }) }]);
    checkIndexes(db);
    expect(found(store, 'quokka-7')).toEqual([a.id]);
    expect(found(store, 'numbat')).toEqual([a.id]);
    expect(found(store, 'wombat')).toEqual([a.id, b.id].sort());
    // One word in the main row, one in the added values: both must be there.
    expect(found(store, 'quokka shop')).toEqual([a.id]);
    expect(found(store, 'quokka db')).toEqual([]);
    expect(found(store, 'numbat quokka')).toEqual([a.id]);
    expect(found(store, 'quok*')).toEqual([a.id]);
    // A filter besides the search (the search may then drive the query).
    expect(store.list({ limit: 50, q: 'quokka', namespace: ['shop'] }).alerts.map((x) => x.id)).toEqual([a.id]);
    expect(store.counts('namespace', { q: 'quokka' })).toEqual([{ key: 'shop', alerts: 1, events: 3 }]);
    // Counts filter per row (no driver): the same answers for words split over both rows.
    expect(store.counts('namespace', { q: 'quokka shop' })).toEqual([{ key: 'shop', alerts: 1, events: 3 }]);
    expect(store.counts('namespace', { q: 'numbat quokka wombat' })).toEqual([{ key: 'shop', alerts: 1, events: 3 }]);
    expect(store.counts('namespace', { q: 'quokka db' })).toEqual([]);
    expect(
      store
        .counts('namespace', { q: 'wombat' })
        .map((r) => r.key)
        .sort(),
    ).toEqual(['db', 'shop']);
    expect([...store.matchingText([a.id, b.id], toFtsQuery('quokka')!)]).toEqual([a.id]);
    expect([...store.matchingText([a.id, b.id], toFtsQuery('wombat')!)].sort()).toEqual([a.id, b.id].sort());
    expect([...store.matchingText([a.id, b.id], toFtsQuery('numbat shop')!)]).toEqual([a.id]);
    expect([...store.matchingText([a.id, b.id], toFtsQuery('numbat db')!)]).toEqual([]);
    db.close();
  });

  it('continue after a restart, follow a late older occurrence, and go with the alert', () => {
    const { db, store } = fresh();
    const t0 = Date.UTC(2024, 5, 1);
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-1', time: at(10) }) }]).alerts[0]!;
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-2', time: at(20) }) }]);
    const again = new AlertStore(db);
    again.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-3', time: at(30) }) }]);
    checkIndexes(db);
    // An older occurrence arriving late rewrites the title and description (the fold rule).
    const late = again.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'koala-0', time: at(1), output: 'an older shell' }) }]).alerts[0]!;
    expect(late.description).toBe('an older shell');
    checkIndexes(db);
    for (const q of ['web-1', 'web-2', 'web-3', 'koala-0', 'older']) expect(found(again, q)).toEqual([a.id]);
    expect(found(again, 'attached terminal')).toEqual([]);
    again.purgeStep({ maxAgeMs: 1, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100, Date.now() + 180_000);
    expect(found(again, 'web')).toEqual([]);
    expect(db.prepare('SELECT count(*) AS n FROM alerts_fts_more').get()).toEqual({ n: 0 });
    checkIndexes(db);
    db.close();
  });

  it('indexes the text of an alert whose batch also brought an older occurrence, and re-indexes it right after', () => {
    const { db, store } = fresh();
    const t0 = Date.UTC(2024, 5, 1);
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    const a = store.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-1', time: at(10), output: 'the first to arrive' }) },
      { id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-2', time: at(5), output: 'the older one' }) },
    ]).alerts[0]!;
    expect(a.description).toBe('the older one');
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-3', time: at(20), output: 'a later one' }) }]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-4', time: at(1), output: 'the oldest' }) }]);
    checkIndexes(db);
    expect(found(store, 'oldest')).toEqual([a.id]);
    expect(found(store, 'arrive')).toEqual([]);
    db.close();
  });

  it('keeps alerts of a version 5 database searchable as they were, and indexes what repeats add to them', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS.slice(0, 5));
    // A row as version 5's ingest wrote it (its code is gone): the whole search text in alerts_fts.
    db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, last_received_at, seq)
      VALUES (1, 'v5', 'edge', 'triggered', 'falco', 'high', 3, 'prod', 'shop', 'Terminal shell in container', 2, 2, 1000, 1000, 1000, 1000, 1000, 1)`).run();
    db.prepare(
      `INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (1, 'shell in web', 'a shell', '[]', '{}', '{}', '')`,
    ).run();
    const text = 'shop\n\nTerminal shell in container\nemu-1\nemu-2';
    db.prepare('INSERT INTO alert_search (id, search_text) VALUES (1, ?)').run(text);
    db.prepare('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (1, ?, ?, ?)').run('shell in web', 'a shell', text);
    const a = { id: 1 };
    migrate(db, 'server', SERVER_MIGRATIONS);
    checkIndexes(db);
    const store = new AlertStore(db);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'v5', pod: 'emu-3' }) }]);
    checkIndexes(db);
    for (const q of ['emu-1', 'emu-2', 'emu-3']) expect(found(store, q)).toEqual([a.id]);
    db.close();
  });

  it('counts a surrogate pair as SQLite does, so the split of the text stays where it was', () => {
    const { db, store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'emoji', pod: 'pod-🦘-1' }) }]).alerts[0]!;
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'emoji', pod: 'pod-🦘-2' }) }]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'emoji', pod: 'pod-🦘-3' }) }]);
    checkIndexes(db);
    expect(db.prepare('SELECT search_text FROM alert_fts_more_content WHERE id = ?').get(a.id)).toEqual({ search_text: 'pod-🦘-2\npod-🦘-3' });
    expect(found(new AlertStore(db), 'pod-🦘-3')).toEqual([a.id]);
    db.close();
  });
});
