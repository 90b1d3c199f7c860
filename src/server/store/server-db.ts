import { join } from 'node:path';
import { migrate, openDatabase, type DB } from '../../shared/sqlite/open.js';

// Schema of the server's SQLite store. Migrations only ever append: a released
// migration is never edited, so every database upgrades the same way.
const MIGRATIONS = [
  `CREATE TABLE agents (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     config_project TEXT NOT NULL,
     created_at TEXT NOT NULL
   );
   CREATE TABLE agent_tokens (
     id INTEGER PRIMARY KEY,
     agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
     name TEXT NOT NULL DEFAULT '',
     token_hash TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL,
     last_used_at TEXT,
     revoked_at TEXT
   );
   CREATE TABLE feed_tokens (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL,
     scope TEXT NOT NULL CHECK (scope IN ('read', 'write', 'admin')),
     token_hash TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL,
     revoked_at TEXT
   );
   -- Times are unix milliseconds: compact, indexable, and immune to the many
   -- RFC 3339 spellings agents send (nanoseconds, offsets).
   CREATE TABLE alerts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     fingerprint TEXT NOT NULL,
     agent TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('triggered', 'acknowledged', 'resolved', 'ignored')),
     source TEXT NOT NULL,
     severity TEXT NOT NULL,
     severity_rank INTEGER NOT NULL,
     title TEXT NOT NULL,
     description TEXT NOT NULL,
     cluster TEXT NOT NULL,
     namespace TEXT NOT NULL,
     policies TEXT NOT NULL,
     rule TEXT NOT NULL,
     labels TEXT NOT NULL,
     details TEXT NOT NULL,
     count INTEGER NOT NULL,
     events INTEGER NOT NULL,
     first_seen INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     seq INTEGER NOT NULL
   );
   -- One open alert per agent and fingerprint; a resolved one is closed for good.
   CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (agent, fingerprint) WHERE status != 'resolved';
   CREATE UNIQUE INDEX alerts_seq ON alerts (seq);
   -- Each list sort and each filter that narrows a lot has an index ending in the
   -- default sort, so a page is an index range scan at any table size.
   CREATE INDEX alerts_last_seen ON alerts (last_seen, id);
   CREATE INDEX alerts_first_seen ON alerts (first_seen, id);
   CREATE INDEX alerts_count ON alerts (count, id);
   CREATE INDEX alerts_status ON alerts (status, last_seen, id);
   CREATE INDEX alerts_severity ON alerts (severity_rank, last_seen, id);
   CREATE INDEX alerts_namespace ON alerts (namespace, last_seen, id);
   CREATE INDEX alerts_rule ON alerts (rule, last_seen, id);
   CREATE TABLE alert_policies (
     alert_id INTEGER NOT NULL,
     kind TEXT NOT NULL,
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     PRIMARY KEY (alert_id, kind, namespace, name)
   ) WITHOUT ROWID;
   CREATE INDEX alert_policies_name ON alert_policies (name, namespace);
   -- Contentless: the text lives in alerts and occurrences already; contentless_delete
   -- lets a row be replaced when a repeat brings new text, without the old text.
   CREATE VIRTUAL TABLE alerts_fts USING fts5(title, description, labels, policies, rule,
     content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2');
   -- Event ids make a re-sent batch idempotent. Rowid order is arrival order,
   -- which lets retention trim the oldest without an index on received_at.
   CREATE TABLE alert_events (
     id INTEGER PRIMARY KEY,
     event_id TEXT NOT NULL UNIQUE,
     alert_id INTEGER NOT NULL,
     received_at INTEGER NOT NULL
   );
   -- Rings of the latest occurrences (events) and raw samples of each alert:
   -- slot = n mod ring size, so keeping them bounded costs no delete.
   CREATE TABLE alert_occurrences (
     alert_id INTEGER NOT NULL,
     slot INTEGER NOT NULL,
     event_no INTEGER NOT NULL,
     event_id TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     count INTEGER NOT NULL,
     first_seen INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     severity TEXT NOT NULL,
     description TEXT NOT NULL,
     labels TEXT NOT NULL,
     PRIMARY KEY (alert_id, slot)
   ) WITHOUT ROWID;
   CREATE TABLE alert_samples (
     alert_id INTEGER NOT NULL,
     slot INTEGER NOT NULL,
     sample_no INTEGER NOT NULL,
     sample TEXT NOT NULL,
     PRIMARY KEY (alert_id, slot)
   ) WITHOUT ROWID;
   CREATE TABLE alert_status_changes (
     id INTEGER PRIMARY KEY,
     alert_id INTEGER NOT NULL,
     from_status TEXT NOT NULL,
     to_status TEXT NOT NULL,
     actor TEXT NOT NULL,
     at INTEGER NOT NULL
   );
   CREATE INDEX alert_status_changes_alert ON alert_status_changes (alert_id, id);
   CREATE TRIGGER alerts_cascade AFTER DELETE ON alerts BEGIN
     DELETE FROM alerts_fts WHERE rowid = old.id;
     DELETE FROM alert_policies WHERE alert_id = old.id;
     DELETE FROM alert_occurrences WHERE alert_id = old.id;
     DELETE FROM alert_samples WHERE alert_id = old.id;
     DELETE FROM alert_status_changes WHERE alert_id = old.id;
   END;
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

export function openServerDb(dataDir: string): DB {
  const db = openDatabase(dataDir === ':memory:' ? ':memory:' : join(dataDir, 'server.db'));
  // Alert indexes are hot on every ingest; 64 MiB of page cache keeps them in memory
  // up to about a million alerts. The WAL is truncated back after checkpoints so
  // a burst does not leave a large file behind.
  db.pragma('cache_size = -65536');
  db.pragma('journal_size_limit = 67108864');
  migrate(db, 'server', MIGRATIONS);
  return db;
}
