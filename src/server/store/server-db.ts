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
   CREATE TABLE alerts (
     id INTEGER PRIMARY KEY,
     fingerprint TEXT NOT NULL,
     agent TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('triggered', 'acknowledged', 'resolved', 'ignored')),
     source TEXT NOT NULL,
     severity TEXT NOT NULL,
     title TEXT NOT NULL,
     description TEXT NOT NULL,
     cluster TEXT NOT NULL,
     namespace TEXT NOT NULL,
     policies TEXT NOT NULL,
     rule TEXT NOT NULL,
     labels TEXT NOT NULL,
     details TEXT NOT NULL,
     samples TEXT NOT NULL,
     count INTEGER NOT NULL,
     first_seen TEXT NOT NULL,
     last_seen TEXT NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     seq INTEGER NOT NULL
   );
   -- One open alert per agent and fingerprint; a resolved one is closed for good.
   CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (agent, fingerprint) WHERE status != 'resolved';
   CREATE INDEX alerts_last_seen ON alerts (last_seen DESC, id DESC);
   CREATE INDEX alerts_seq ON alerts (seq);
   CREATE TABLE alert_events (
     event_id TEXT PRIMARY KEY,
     alert_id INTEGER NOT NULL,
     received_at INTEGER NOT NULL
   ) WITHOUT ROWID;
   CREATE INDEX alert_events_received ON alert_events (received_at);
   CREATE TABLE alert_status_changes (
     id INTEGER PRIMARY KEY,
     alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
     from_status TEXT NOT NULL,
     to_status TEXT NOT NULL,
     actor TEXT NOT NULL,
     at TEXT NOT NULL
   );
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
];

export function openServerDb(dataDir: string): DB {
  const db = openDatabase(dataDir === ':memory:' ? ':memory:' : join(dataDir, 'server.db'));
  migrate(db, 'server', MIGRATIONS);
  return db;
}
