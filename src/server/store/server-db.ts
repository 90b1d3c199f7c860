import { join } from 'node:path';
import { migrate, openDatabase, type DB } from '../../shared/sqlite/open.js';
import type { FilesLog } from '../../shared/sqlite/private-files.js';

// Schema of the server's SQLite store. Migrations only ever append: a released
// migration is never edited, so every database upgrades the same way.
export const SERVER_MIGRATIONS = [
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
   -- RFC 3339 spellings agents send (nanoseconds, offsets). The row holds what
   -- queries filter and sort on, and stays narrow (~150 bytes) so that walking an
   -- index and checking filters touches few pages; the text is in alert_text.
   CREATE TABLE alerts (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     fingerprint TEXT NOT NULL,
     agent TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('triggered', 'acknowledged', 'resolved', 'ignored')),
     source TEXT NOT NULL,
     severity TEXT NOT NULL,
     severity_rank INTEGER NOT NULL,
     cluster TEXT NOT NULL,
     namespace TEXT NOT NULL,
     rule TEXT NOT NULL,
     count INTEGER NOT NULL,
     events INTEGER NOT NULL,
     first_seen INTEGER NOT NULL,
     last_seen INTEGER NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     seq INTEGER NOT NULL
   );
   -- Written once when the alert opens (search_text grows with new label values).
   CREATE TABLE alert_text (
     id INTEGER PRIMARY KEY,
     title TEXT NOT NULL,
     description TEXT NOT NULL,
     policies TEXT NOT NULL,
     labels TEXT NOT NULL,
     details TEXT NOT NULL,
     -- What full-text search sees besides title and description: namespace,
     -- policies, rule, then every label value seen (pods, users...), one a line.
     search_text TEXT NOT NULL
   );
   -- One open alert per agent and fingerprint; a resolved one is closed for good.
   CREATE UNIQUE INDEX alerts_open_fingerprint ON alerts (agent, fingerprint) WHERE status != 'resolved';
   -- A repeat rewrites seq, last_seen and count, so only their indexes move on the
   -- hot path. Filter indexes end in id rather than last_seen: they change only
   -- when an alert is created, triaged or purged. Queries pick between walking
   -- the sort index and sorting a small filtered set (alert-query.ts).
   CREATE UNIQUE INDEX alerts_seq ON alerts (seq);
   CREATE INDEX alerts_last_seen ON alerts (last_seen, id);
   CREATE INDEX alerts_count ON alerts (count, id);
   CREATE INDEX alerts_status ON alerts (status, id);
   CREATE INDEX alerts_severity ON alerts (severity_rank, id);
   CREATE INDEX alerts_namespace ON alerts (namespace, id);
   CREATE INDEX alerts_rule ON alerts (rule, id);
   -- Alerts and occurrences per status and dimension value, kept in step by
   -- ingest, triage and purge, so dashboard counts cost the same at any size.
   CREATE TABLE alert_rollup (
     dim TEXT NOT NULL,
     key TEXT NOT NULL,
     status TEXT NOT NULL,
     alerts INTEGER NOT NULL,
     events INTEGER NOT NULL,
     PRIMARY KEY (dim, key, status)
   ) WITHOUT ROWID;
   CREATE TABLE alert_policies (
     alert_id INTEGER NOT NULL,
     kind TEXT NOT NULL,
     namespace TEXT NOT NULL,
     name TEXT NOT NULL,
     PRIMARY KEY (alert_id, kind, namespace, name)
   ) WITHOUT ROWID;
   CREATE INDEX alert_policies_name ON alert_policies (name, namespace);
   -- External content: the text stays in alert_text ('rebuild' can recreate the index
   -- from it). The store writes the index itself rather than through triggers:
   -- FTS5 flushes its buffer at every trigger's savepoint, which made ingest 3x
   -- slower. Only a change of search_text (a new pod, user...) re-indexes an
   -- alert, so repeats of an alert cost the index nothing.
   CREATE VIRTUAL TABLE alerts_fts USING fts5(title, description, search_text,
     content='alert_text', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
   -- Event ids make a re-sent batch idempotent. Rowid order is arrival order,
   -- which lets retention trim the oldest without an index on received_at.
   CREATE TABLE alert_events (
     id INTEGER PRIMARY KEY,
     event_id TEXT NOT NULL UNIQUE,
     alert_id INTEGER NOT NULL,
     received_at INTEGER NOT NULL
   );
   -- A ring of the latest occurrences (events) of each alert with their raw
   -- samples: slot = n mod ring size, so keeping it bounded costs no delete.
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
     -- NULL: the same as the alert's (the first occurrence), not stored twice.
     description TEXT,
     labels TEXT,
     samples TEXT NOT NULL,
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
     DELETE FROM alert_text WHERE id = old.id;
     DELETE FROM alert_policies WHERE alert_id = old.id;
     DELETE FROM alert_occurrences WHERE alert_id = old.id;
     DELETE FROM alert_status_changes WHERE alert_id = old.id;
   END;
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // The occurrence ring as a rowid table with a unique index on the slot: a ring
  // write appends its ~1 KB row at the end of the table and moves one small index
  // entry, where the clustered WITHOUT ROWID table rewrote a random page of big
  // rows (and split it) for every event. 3x faster in isolation, the largest
  // single cost of a repeat. The trigger is dropped and made again because a
  // rename is refused while a trigger names a table that is not there.
  `DROP TRIGGER alerts_cascade;
   ALTER TABLE alert_occurrences RENAME TO alert_occurrences_v1;
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
     description TEXT,
     labels TEXT,
     samples TEXT NOT NULL
   );
   INSERT INTO alert_occurrences SELECT alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples
     FROM alert_occurrences_v1 ORDER BY alert_id, event_no;
   DROP TABLE alert_occurrences_v1;
   CREATE UNIQUE INDEX alert_occurrences_slot ON alert_occurrences (alert_id, slot);
   CREATE TRIGGER alerts_cascade AFTER DELETE ON alerts BEGIN
     DELETE FROM alert_text WHERE id = old.id;
     DELETE FROM alert_policies WHERE alert_id = old.id;
     DELETE FROM alert_occurrences WHERE alert_id = old.id;
     DELETE FROM alert_status_changes WHERE alert_id = old.id;
   END;`,
  // Retention ages alerts by when this server received them: last_seen is the
  // time written in the events, and a backfill, a Falco file read from the
  // start or a slow clock would have them purged as they arrive. The store
  // moves last_received_at at most once a minute, so repeats seldom touch its
  // index. Existing alerts take updated_at, the latest receipt or triage.
  // clock_skew: an occurrence was stamped well after its receipt (a fast clock).
  `ALTER TABLE alerts ADD COLUMN last_received_at INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE alerts ADD COLUMN clock_skew INTEGER NOT NULL DEFAULT 0;
   UPDATE alerts SET last_received_at = updated_at;
   CREATE INDEX alerts_last_received ON alerts (last_received_at, id);`,
  // An open alert's severity is the highest of its occurrences (shared/alert/fold.ts);
  // severity_event names the occurrence that set it. The ring overwrites it in
  // time, so before it does, the store copies it to the alert's pinned slot
  // (PINNED_SLOT), where the detail still finds it. Existing alerts took their
  // severity from the newest occurrence: the newest of that severity still in
  // the ring is the best guess.
  `ALTER TABLE alerts ADD COLUMN severity_event INTEGER NOT NULL DEFAULT 0;
   UPDATE alerts SET severity_event = coalesce((SELECT max(o.event_no) FROM alert_occurrences o WHERE o.alert_id = alerts.id AND o.severity = alerts.severity), 0);`,
  // search_text moves to a narrow table of its own. It changes whenever a repeat
  // brings a label value the alert has not seen (a new pod, user...), and in
  // alert_text each change rewrote a wide row (~1.3 KB: policies, labels,
  // details), so a page of three alerts: a third of the pages a busy batch wrote
  // were alert_text's. alert_search keeps ~20 alerts a page. The full-text index
  // reads its content through a view of both tables ('rebuild' and
  // 'integrity-check' see the text as it is); it is built again here once.
  // alert_text.search_text is no longer read or written (new rows hold '').
  `CREATE TABLE alert_search (
     id INTEGER PRIMARY KEY,
     search_text TEXT NOT NULL
   );
   INSERT INTO alert_search (id, search_text) SELECT id, search_text FROM alert_text;
   CREATE VIEW alert_fts_content AS
     SELECT t.id AS id, t.title AS title, t.description AS description, coalesce(s.search_text, '') AS search_text
     FROM alert_text t LEFT JOIN alert_search s ON s.id = t.id;
   DROP TABLE alerts_fts;
   CREATE VIRTUAL TABLE alerts_fts USING fts5(title, description, search_text,
     content='alert_fts_content', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
   INSERT INTO alerts_fts (alerts_fts) VALUES ('rebuild');
   DROP TRIGGER alerts_cascade;
   CREATE TRIGGER alerts_cascade AFTER DELETE ON alerts BEGIN
     DELETE FROM alert_text WHERE id = old.id;
     DELETE FROM alert_search WHERE id = old.id;
     DELETE FROM alert_policies WHERE alert_id = old.id;
     DELETE FROM alert_occurrences WHERE alert_id = old.id;
     DELETE FROM alert_status_changes WHERE alert_id = old.id;
   END;`,
  // Label values that repeats bring go to a second, small full-text index
  // (alerts_fts_more, one row per alert), not into the alert's main row. Re-indexing
  // the main row tokenized its title, description and every value twice (the
  // delete needs the old text, the insert the new): ~13 µs of CPU per new pod or
  // user, for more than half the repeats of a busy store. alert_search keeps the
  // whole text; main_len (characters, as SQLite counts them) is how much of it
  // alerts_fts has, NULL for all of it: rows stay as they are, nothing is rebuilt.
  // A search matches each word in either index (alert-query.ts).
  `ALTER TABLE alert_search ADD COLUMN main_len INTEGER;
   DROP VIEW alert_fts_content;
   CREATE VIEW alert_fts_content AS
     SELECT t.id AS id, t.title AS title, t.description AS description,
       coalesce(CASE WHEN s.main_len IS NULL THEN s.search_text ELSE substr(s.search_text, 1, s.main_len) END, '') AS search_text
     FROM alert_text t LEFT JOIN alert_search s ON s.id = t.id;
   CREATE VIEW alert_fts_more_content AS
     SELECT id, substr(search_text, main_len + 2) AS search_text FROM alert_search WHERE main_len IS NOT NULL;
   CREATE VIRTUAL TABLE alerts_fts_more USING fts5(search_text,
     content='alert_fts_more_content', content_rowid='id', tokenize='unicode61 remove_diacritics 2');`,
  // Added label values get one full-text row each, appended once (alerts_fts_added,
  // rowid = alert id × 64 + slot; an alert keeps at most 64 values searchable, so
  // slots never reach the next alert's rowids). Held in one row, as alerts_fts_more
  // holds them, each new value rewrites alert_search, deletes the row (tokenizing the
  // old text again) and inserts it whole: three statements, 16% of the mix's CPU.
  // The table keeps its own text, which reloading an open alert reads back; a
  // phrase matches within one added value, not across two. columnsize=0: no
  // ranking reads the sizes. alert_search is left with the text the alert opened
  // with, which is what alerts_fts has, and main_len goes.
  `CREATE VIRTUAL TABLE alerts_fts_added USING fts5(value, columnsize=0, tokenize='unicode61 remove_diacritics 2');
   INSERT INTO alerts_fts_added (rowid, value)
     WITH RECURSIVE split(id, slot, value, rest) AS (
       SELECT id, -1, '', substr(search_text, main_len + 2) || char(10) FROM alert_search WHERE main_len IS NOT NULL
       UNION ALL
       SELECT id, slot + 1, substr(rest, 1, instr(rest, char(10)) - 1), substr(rest, instr(rest, char(10)) + 1) FROM split WHERE rest != ''
     )
     SELECT id * 64 + slot, value FROM split WHERE slot BETWEEN 0 AND 63 AND value != '' ORDER BY id, slot;
   UPDATE alert_search SET search_text = substr(search_text, 1, main_len) WHERE main_len IS NOT NULL;
   DROP TABLE alerts_fts_more;
   DROP VIEW alert_fts_more_content;
   DROP VIEW alert_fts_content;
   ALTER TABLE alert_search DROP COLUMN main_len;
   CREATE VIEW alert_fts_content AS
     SELECT t.id AS id, t.title AS title, t.description AS description, coalesce(s.search_text, '') AS search_text
     FROM alert_text t LEFT JOIN alert_search s ON s.id = t.id;`,
  // An agent's latest change of configuration project made on this server (the API or the CLI), until the Kafka
  // module has published it to the other replicas (kafka/tokens.ts): the value the user set, which a change another
  // replica made meanwhile must not erase before it is published. Without Kafka, one row per moved agent stays.
  `CREATE TABLE agent_project_changes (
     agent TEXT PRIMARY KEY,
     config_project TEXT NOT NULL,
     changed_at TEXT NOT NULL
   ) WITHOUT ROWID;`,
];

/** The server's database file in its data_dir. */
export const SERVER_DB_FILE = 'server.db';

export function openServerDb(dataDir: string, log?: FilesLog): DB {
  const db = openDatabase(dataDir === ':memory:' ? ':memory:' : join(dataDir, SERVER_DB_FILE), log);
  // Alert indexes are hot on every ingest; 64 MiB of page cache keeps them in memory
  // up to about a million alerts. A checkpoint copies each page once however
  // often the log rewrote it, and costs two fsyncs: letting the log reach 128 MiB
  // before one (SQLite's default is 4 MiB) made a busy store ~1.5x faster,
  // because hot index pages are rewritten by nearly every batch. The WAL is
  // truncated back after checkpoints so a burst does not leave a large file behind.
  db.pragma('cache_size = -65536');
  db.pragma('wal_autocheckpoint = 32768');
  db.pragma('journal_size_limit = 67108864');
  migrate(db, 'server', SERVER_MIGRATIONS);
  return db;
}
