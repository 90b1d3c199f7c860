import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

// The databases hold secrets (webhook URLs with their tokens, feed and CI token
// hashes, alerts): only the user running Verdict may read them. SQLite's unix
// VFS creates the -wal and -shm files with the main file's permissions, so the
// main file is made 0600 before SQLite opens it. Files of an older Verdict that
// made them 0644 are narrowed at start. A data directory that already existed is
// the user's choice (it may be shared, /srv say): it is not changed, only reported.

/** Where the changes and warnings go: a process's pino logger, or a command's stderr (a pino Logger fits). */
export interface FilesLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

const SQLITE_FILES = ['', '-wal', '-shm', '-journal'];
const warned = new Set<string>();

function wide(mode: number): boolean {
  return (mode & 0o077) !== 0;
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/** Makes `file` (created 0600 if missing) and SQLite's files beside it this user's only; reports a data directory others can open. */
export function keepPrivate(file: string, dirExisted: boolean, log: FilesLog): void {
  closeSync(openSync(file, 'a', 0o600));
  for (const suffix of SQLITE_FILES) {
    const f = file + suffix;
    const st = statSync(f, { throwIfNoEntry: false });
    if (!st || !wide(st.mode)) continue;
    try {
      chmodSync(f, 0o600);
      log.info({ file: f, was_mode: octal(st.mode) }, 'Database file was readable by other users; made it 0600');
    } catch (e) {
      log.warn(
        { file: f, mode: octal(st.mode), error: (e as Error).message },
        `Database file is readable by other users and could not be changed; run chmod 600 ${f} as its owner`,
      );
    }
  }
  const dir = dirname(file);
  if (!dirExisted || warned.has(dir)) return;
  const mode = statSync(dir).mode;
  if (!wide(mode)) return;
  warned.add(dir);
  log.warn(
    { data_dir: dir, mode: octal(mode) },
    `Data directory is open to other users; the database files in it are kept to this user (0600), run chmod 700 ${dir} to close the directory too`,
  );
}
