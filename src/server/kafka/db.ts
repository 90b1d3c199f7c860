import { randomUUID } from 'node:crypto';
import { migrate, type DB } from '../../shared/sqlite/open.js';

// The Kafka module's own tables, in their own migration scope of the server's
// database: what this replica has projected from the log, and the
// replica-independent identity of each alert. Migrations only ever append.
const MIGRATIONS = [
  `CREATE TABLE kafka_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   -- Next offset to project, per topic partition. Kept in this database so that
   -- the projection and its progress can only be lost together: a replica whose
   -- SQLite is gone starts from the beginning of the log and rebuilds.
   CREATE TABLE kafka_offsets (
     topic TEXT NOT NULL,
     partition INTEGER NOT NULL,
     next_offset INTEGER NOT NULL,
     PRIMARY KEY (topic, partition)
   ) WITHOUT ROWID;
   -- Alert ids are rowids of each replica's SQLite and differ between replicas;
   -- status events name an alert by agent/fingerprint/first event id instead,
   -- which every replica derives alike because one partition orders it all.
   CREATE TABLE kafka_alert_uids (
     alert_id INTEGER PRIMARY KEY,
     uid TEXT NOT NULL UNIQUE
   );
   CREATE TRIGGER kafka_alert_uids_cascade AFTER DELETE ON alerts BEGIN
     DELETE FROM kafka_alert_uids WHERE alert_id = old.id;
   END;
   -- Token rows this replica has published to or taken from the tokens topic.
   CREATE TABLE kafka_tokens_seen (
     key TEXT PRIMARY KEY,
     revoked INTEGER NOT NULL
   ) WITHOUT ROWID;`,
];

export function migrateKafka(db: DB): void {
  migrate(db, 'kafka', MIGRATIONS);
}

/**
 * This replica's identity, created with its database: a replica that lost its
 * SQLite is a new replica with a new consumer group, which reads the log from
 * the start.
 */
export function replicaId(db: DB): string {
  const row = db.prepare("SELECT value FROM kafka_meta WHERE key = 'replica_id'").get() as { value: string } | undefined;
  if (row) return row.value;
  const id = randomUUID().slice(0, 13).replace('-', '');
  db.prepare("INSERT INTO kafka_meta (key, value) VALUES ('replica_id', ?)").run(id);
  return id;
}
