import Database from 'better-sqlite3';
import { dirname } from 'node:path';
import { moduleLogger } from '../log/logger.js';
import { makeDataDir } from './data-dir.js';
import { type FilesLog, keepPrivate } from './private-files.js';

export type DB = Database.Database;

/**
 * Statements prepared once, by their SQL text: better-sqlite3 prepares anew on
 * every prepare(), which on a request path costs more than running them. At
 * most `max` kept (queries built from filters vary); past that it starts over.
 */
export function preparedCache(db: DB, max = 500): (sql: string) => Database.Statement<unknown[]> {
  const kept = new Map<string, Database.Statement<unknown[]>>();
  return (sql) => {
    let st = kept.get(sql);
    if (!st) {
      if (kept.size >= max) kept.clear();
      kept.set(sql, (st = db.prepare<unknown[]>(sql)));
    }
    return st;
  };
}

/**
 * Opens a SQLite database in WAL mode. synchronous=NORMAL keeps every commit
 * across a process crash (kill -9); only a power loss can cost the last commits.
 * The directory and files are this user's only (0700, 0600): see private-files.ts.
 */
export function openDatabase(file: string, log: FilesLog = moduleLogger('store')): DB {
  if (file !== ':memory:') keepPrivate(file, makeDataDir(dirname(file)), log);
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  db.pragma('foreign_keys = ON');
  return db;
}

/**
 * Versioned migrations per scope, applied in order at start-up, each in its own
 * transaction. Scopes let modules (alerts, falco inbox, webhooks...) own their tables.
 */
export function migrate(db: DB, scope: string, migrations: readonly string[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (scope TEXT PRIMARY KEY, version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_migrations WHERE scope = ?').get(scope) as { version: number } | undefined;
  const current = row?.version ?? 0;
  if (current > migrations.length) {
    throw new Error(
      `database schema "${scope}" is at version ${current}, newer than this Verdict knows (${migrations.length}); run a newer Verdict or restore a matching backup`,
    );
  }
  for (let v = current; v < migrations.length; v++) {
    db.transaction(() => {
      db.exec(migrations[v]!);
      db.prepare('INSERT INTO schema_migrations (scope, version) VALUES (?, ?) ON CONFLICT(scope) DO UPDATE SET version = excluded.version').run(scope, v + 1);
    })();
  }
}
