import { describe, expect, it } from 'vitest';
import { migrate, openDatabase, type DB } from '../../shared/sqlite/open.js';
import { AlertStore } from './alert-store.js';
import { SERVER_MIGRATIONS } from './server-db.js';
import { ciliumPayload, falcoPayload } from './test-payloads.js';

// Label values that repeats bring are indexed in alerts_fts_added, one row per
// value appended once (migration 7), not by re-indexing the alert's main
// full-text row: a search must not tell the two apart, and both indexes must
// stay in step with their text.

let ev = 0;
const id = () => `more-${++ev}`;

function checkIndexes(db: DB): void {
  db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')");
  db.exec("INSERT INTO alerts_fts_added (alerts_fts_added) VALUES ('integrity-check')");
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
    expect([...store.matchingText([a.id, b.id], 'quokka')]).toEqual([a.id]);
    expect([...store.matchingText([a.id, b.id], 'wombat')].sort()).toEqual([a.id, b.id].sort());
    expect([...store.matchingText([a.id, b.id], 'numbat shop')]).toEqual([a.id]);
    expect([...store.matchingText([a.id, b.id], 'numbat db')]).toEqual([]);
    db.close();
  });

  it('continue after a restart, follow an occurrence that raises the severity, and go with the alert', () => {
    const { db, store } = fresh();
    const t0 = Date.UTC(2024, 5, 1);
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-1', time: at(10) }) }]).alerts[0]!;
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-2', time: at(20) }) }]);
    const again = new AlertStore(db);
    again.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'shell', pod: 'web-3', time: at(30) }) }]);
    checkIndexes(db);
    // An occurrence that raises the severity rewrites the title and description (the fold rule), an older one too.
    const late = again.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'shell', pod: 'koala-0', severity: 'critical', time: at(1), output: 'an older shell' }) },
    ]).alerts[0]!;
    expect(late.description).toBe('an older shell');
    checkIndexes(db);
    for (const q of ['web-1', 'web-2', 'web-3', 'koala-0', 'older']) expect(found(again, q)).toEqual([a.id]);
    expect(found(again, 'attached terminal')).toEqual([]);
    again.purgeStep({ maxAgeMs: 1, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100, Date.now() + 180_000);
    expect(found(again, 'web')).toEqual([]);
    expect(db.prepare('SELECT count(*) AS n FROM alerts_fts_added').get()).toEqual({ n: 0 });
    checkIndexes(db);
    db.close();
  });

  it('indexes the text of an alert whose batch also raised its severity, and re-indexes it right after', () => {
    const { db, store } = fresh();
    const t0 = Date.UTC(2024, 5, 1);
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    const a = store.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-1', severity: 'low', time: at(10), output: 'the first to arrive' }) },
      { id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-2', severity: 'high', time: at(5), output: 'the older one' }) },
    ]).alerts[0]!;
    expect(a.description).toBe('the older one');
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-3', severity: 'high', time: at(20), output: 'a later one' }) }]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'late', pod: 'web-4', severity: 'critical', time: at(1), output: 'the oldest' }) }]);
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

  it('appends one row per new value (rowid = id × 64 + slot) and leaves alert_search and the main index as the alert opened', () => {
    const { db, store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-0' }) }]).alerts[0]!;
    const b = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'next', pod: 'jade-0' }) }]).alerts[0]!;
    const searchRow = () => db.prepare('SELECT search_text FROM alert_search WHERE id = ?').get(a.id);
    const opened = searchRow();
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-1' }) }]);
    // A batch with two new values, and one already seen: two rows, in the next slots.
    store.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-2' }) },
      { id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-1' }) },
      { id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-3' }) },
    ]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'next', pod: 'jade-1' }) }]);
    expect(searchRow()).toEqual(opened);
    expect(db.prepare('SELECT rowid AS r, value FROM alerts_fts_added ORDER BY rowid').all()).toEqual([
      { r: a.id * 64, value: 'opal-1' },
      { r: a.id * 64 + 1, value: 'opal-2' },
      { r: a.id * 64 + 2, value: 'opal-3' },
      { r: b.id * 64, value: 'jade-1' },
    ]);
    // A restart reads the slots back: the next value takes the next slot, a known one none.
    const again = new AlertStore(db);
    again.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-2' }) }]);
    again.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'slots', pod: 'opal-4' }) }]);
    expect(
      db.prepare('SELECT rowid - ? AS slot, value FROM alerts_fts_added WHERE rowid BETWEEN ? AND ? ORDER BY rowid').all(a.id * 64, a.id * 64, a.id * 64 + 63),
    ).toEqual([
      { slot: 0, value: 'opal-1' },
      { slot: 1, value: 'opal-2' },
      { slot: 2, value: 'opal-3' },
      { slot: 3, value: 'opal-4' },
    ]);
    checkIndexes(db);
    // Deleting one alert takes its slots only.
    db.prepare('UPDATE alerts SET last_received_at = 0 WHERE id = ?').run(a.id);
    again.purgeStep({ maxAgeMs: 60_000, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100);
    expect(db.prepare('SELECT rowid AS r FROM alerts_fts_added').all()).toEqual([{ r: b.id * 64 }]);
    expect(found(again, 'opal')).toEqual([]);
    expect(found(again, 'jade-1')).toEqual([b.id]);
    checkIndexes(db);
    db.close();
  });

  it('matches a phrase within the opening text or within one added value, not across two values', () => {
    const { db, store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'phrase', pod: 'red fox' }) }]).alerts[0]!;
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'phrase', pod: 'brown bear' }) }]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'phrase', pod: 'grey wolf' }) }]);
    expect(found(store, '"brown bear"')).toEqual([a.id]);
    expect(found(store, '"grey wolf"')).toEqual([a.id]);
    expect(found(store, 'bear grey')).toEqual([a.id]);
    // Adjacent values: a phrase over the end of one and the start of the next is not found.
    expect(found(store, '"bear grey"')).toEqual([]);
    expect(found(store, '"fox brown"')).toEqual([]);
    expect([...store.matchingText([a.id], '"brown bear"')]).toEqual([a.id]);
    expect([...store.matchingText([a.id], '"bear grey"')]).toEqual([]);
    db.close();
  });

  it('lists an alert once when several of its added values match, and keeps each value apart from its neighbours', () => {
    const { db, store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'many', pod: 'api-0' }) }]).alerts[0]!;
    // Rowid neighbours: the next alert's first slot follows this one's last.
    const b = store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'near', pod: 'quiet-0' }) }]).alerts[0]!;
    for (let i = 1; i < 80; i++) store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'many', pod: `lynx-${i}` }) }]);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'near', pod: 'lynx-x' }) }]);
    expect(
      store
        .list({ limit: 50, q: 'lynx' })
        .alerts.map((x) => x.id)
        .sort(),
    ).toEqual([a.id, b.id].sort());
    expect(
      store
        .list({ limit: 50, q: 'lynx', namespace: ['shop'] })
        .alerts.map((x) => x.id)
        .sort(),
    ).toEqual([a.id, b.id].sort());
    // The alert's values stay in its own rowids, past the cap as well.
    const slots = db.prepare('SELECT rowid >> 6 AS id, count(*) AS n, max(rowid & 63) AS top FROM alerts_fts_added GROUP BY 1 ORDER BY 1').all() as {
      id: number;
      n: number;
      top: number;
    }[];
    expect(slots.map((r) => r.id)).toEqual([a.id, b.id]);
    expect(slots[0]!.n).toBeGreaterThan(10);
    expect(slots[0]!.top).toBeLessThan(64);
    expect(found(store, 'lynx-x')).toEqual([b.id]);
    checkIndexes(db);
    db.close();
  });

  it('moves the added values of a version 6 database to one row each, a surrogate pair counted as SQLite counts it', () => {
    const db = openDatabase(':memory:');
    migrate(db, 'server', SERVER_MIGRATIONS.slice(0, 6));
    // Rows as version 6's ingest wrote them (its code is gone): the whole text in alert_search,
    // main_len characters of it in alerts_fts, the rest in alerts_fts_more.
    for (const [rowId, fp, main, more] of [
      [1, 'v6', 'shop\n\nTerminal shell in container\npod-🦘-1', 'pod-🦘-2\nemu-9'],
      [2, 'v6b', 'shop\n\nTerminal shell in container\nyak-1', ''],
    ] as const) {
      db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, last_received_at, seq)
        VALUES (?, ?, 'edge', 'triggered', 'falco', 'high', 3, 'prod', 'shop', 'Terminal shell in container', 2, 2, 1000, 1000, 1000, 1000, 1000, ?)`).run(
        rowId,
        fp,
        rowId,
      );
      db.prepare(
        `INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (?, 'shell in web', 'a shell', '[]', '{}', '{}', '')`,
      ).run(rowId);
      const all = more ? `${main}\n${more}` : main;
      // main_len as SQLite counts characters: the kangaroo is one.
      db.prepare('INSERT INTO alert_search (id, search_text, main_len) VALUES (?, ?, ?)').run(rowId, all, more ? [...main].length : null);
      db.prepare('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (?, ?, ?, ?)').run(rowId, 'shell in web', 'a shell', main);
      if (more) db.prepare('INSERT INTO alerts_fts_more (rowid, search_text) VALUES (?, ?)').run(rowId, more);
    }
    migrate(db, 'server', SERVER_MIGRATIONS);
    checkIndexes(db);
    expect(db.prepare('SELECT rowid AS r, value FROM alerts_fts_added ORDER BY rowid').all()).toEqual([
      { r: 64, value: 'pod-🦘-2' },
      { r: 65, value: 'emu-9' },
    ]);
    expect(db.prepare('SELECT id, search_text FROM alert_search ORDER BY id').all()).toEqual([
      { id: 1, search_text: 'shop\n\nTerminal shell in container\npod-🦘-1' },
      { id: 2, search_text: 'shop\n\nTerminal shell in container\nyak-1' },
    ]);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name IN ('alerts_fts_more', 'alert_fts_more_content')").all()).toEqual([]);
    const store = new AlertStore(db);
    for (const q of ['pod-🦘-1', 'pod-🦘-2', 'emu-9']) expect(found(store, q)).toEqual([1]);
    expect(found(store, 'yak-1')).toEqual([2]);
    // The migrated values are known to the alert (not added again) and the next takes slot 2.
    store.ingest('edge', [
      { id: id(), payload: falcoPayload({ fp: 'v6', pod: 'emu-9' }) },
      { id: id(), payload: falcoPayload({ fp: 'v6', pod: 'emu-10' }) },
      { id: id(), payload: falcoPayload({ fp: 'v6b', pod: 'yak-2' }) },
    ]);
    const rowsOf = (v: string) => (db.prepare('SELECT rowid AS r FROM alerts_fts_added WHERE value = ?').all(v) as { r: number }[]).map((r) => r.r);
    expect(rowsOf('emu-9')).toEqual([65]);
    expect(rowsOf('emu-10')[0]).toBeGreaterThanOrEqual(66);
    expect(rowsOf('emu-10')[0]).toBeLessThan(128);
    expect(rowsOf('yak-2')[0]).toBeGreaterThanOrEqual(128);
    expect(rowsOf('yak-2')[0]).toBeLessThan(192);
    checkIndexes(db);
    db.close();
  });
});
