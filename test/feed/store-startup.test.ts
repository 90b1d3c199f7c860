import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb, SERVER_MIGRATIONS } from '../../src/server/store/server-db.js';
import { ciliumPayload } from '../../src/server/store/test-payloads.js';
import { tempDir } from '../helpers/processes.js';

// The server's database as start-up leaves it: a file in WAL mode, at the
// newest schema version, reached by running the versioned migrations once.

const version = (db: Database.Database) =>
  (db.prepare("SELECT version FROM schema_migrations WHERE scope = 'server'").get() as { version: number } | undefined)?.version;

describe('alert store at start-up', () => {
  it('creates server.db in WAL mode at the newest schema version, and reopens it without migrating again', () => {
    const dir = tempDir('verdict-startup-');
    let db = openServerDb(dir);
    expect(existsSync(join(dir, 'server.db'))).toBe(true);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(version(db)).toBe(SERVER_MIGRATIONS.length);
    const [a] = new AlertStore(db).ingest('edge', [{ id: 'startup-1', payload: ciliumPayload({ fp: 'startup' }) }]).alerts;
    db.close();

    // A second start finds the schema current: nothing re-runs, nothing is lost.
    db = openServerDb(dir);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(version(db)).toBe(SERVER_MIGRATIONS.length);
    expect(new AlertStore(db).get(a!.id)).toMatchObject({ fingerprint: 'startup', count: 1 });
    db.close();
  });

  it('refuses a database from a newer Verdict rather than guessing at its schema', () => {
    const dir = tempDir('verdict-startup-');
    openServerDb(dir).close();
    const raw = new Database(join(dir, 'server.db'));
    raw.prepare("UPDATE schema_migrations SET version = ? WHERE scope = 'server'").run(SERVER_MIGRATIONS.length + 1);
    raw.close();
    expect(() => openServerDb(dir)).toThrow(/newer than this Verdict knows/);
  });
});
