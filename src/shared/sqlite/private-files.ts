import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

// The databases hold secrets (webhook URLs with their tokens, feed and CI token
// hashes, alerts): only the user running Verdict may read them. SQLite's unix
// VFS creates the -wal and -shm files with the main file's permissions, so the
// main file is made 0600 before SQLite opens it. Files of an older Verdict that
// made them 0644 are narrowed at start. A data directory that already existed is
// the user's choice (it may be shared, /srv say): it is not changed, only reported
// when other users (not its group) can open it.
//
// Group bits are narrowed too, but quietly (debug): on a Kubernetes volume with
// fsGroup the kubelet gives the directory and files group bits (2770, 0660)
// again at every mount, for the pod's own group. Telling the operator each start
// to chmod what the kubelet undoes would be advice that cannot stick.

/** Where the changes and warnings go: a process's pino logger, or a command's stderr (a pino Logger fits). */
export interface FilesLog {
  debug?(obj: Record<string, unknown>, msg: string): void;
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

const SQLITE_FILES = ['', '-wal', '-shm', '-journal'];
const warned = new Set<string>();

function wide(mode: number): boolean {
  return (mode & 0o077) !== 0;
}

function openToOthers(mode: number): boolean {
  return (mode & 0o007) !== 0;
}

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

/** Opening or creating the database file failed: what to do about it, in words. */
function cannotOpen(file: string, e: unknown): Error {
  const dir = dirname(file);
  const uid = process.getuid?.();
  const who = uid === undefined ? 'the user running Verdict' : `the user running Verdict (uid ${uid})`;
  switch (code(e)) {
    case 'EACCES':
    case 'EPERM':
      return new Error(
        `cannot open the database ${file}: permission denied; the data directory ${dir} and the files in it must belong to ${who} (chown -R it, or in Kubernetes set the pod's runAsUser/fsGroup to match the volume), or give --data-dir (data_dir in a server config file) a directory this user can write to`,
      );
    case 'EROFS':
      return new Error(
        `cannot open the database ${file}: ${dir} is on a read-only file system; give --data-dir (data_dir in a server config file) a writable directory`,
      );
    case 'EISDIR':
      return new Error(
        `cannot open the database ${file}: it is a directory; move it away, or give --data-dir (data_dir in a server config file) another directory`,
      );
    default:
      return new Error(
        `cannot open the database ${file}: ${(e as Error).message}; give --data-dir (data_dir in a server config file) a directory this user can write to`,
      );
  }
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/** Makes `file` (created 0600 if missing) and SQLite's files beside it this user's only; reports a data directory others can open. */
export function keepPrivate(file: string, dirExisted: boolean, log: FilesLog): void {
  try {
    closeSync(openSync(file, 'a', 0o600));
  } catch (e) {
    throw cannotOpen(file, e);
  }
  for (const suffix of SQLITE_FILES) {
    const f = file + suffix;
    const st = statSync(f, { throwIfNoEntry: false });
    if (!st || !wide(st.mode)) continue;
    const others = openToOthers(st.mode);
    try {
      chmodSync(f, 0o600);
      if (others) log.info({ file: f, was_mode: octal(st.mode) }, 'Database file was readable by other users; made it 0600');
      else log.debug?.({ file: f, was_mode: octal(st.mode) }, "Database file was readable by its group (a volume's fsGroup); made it 0600");
    } catch (e) {
      log.warn(
        { file: f, mode: octal(st.mode), error: (e as Error).message },
        `Database file is readable by ${others ? 'other users' : 'its group'} and could not be changed; run chmod 600 ${f} as its owner`,
      );
    }
  }
  const dir = dirname(file);
  if (!dirExisted || warned.has(dir)) return;
  const mode = statSync(dir).mode;
  if (!openToOthers(mode)) return;
  warned.add(dir);
  log.warn(
    { data_dir: dir, mode: octal(mode) },
    `Data directory is open to other users; the database files in it are kept to this user (0600), run chmod 700 ${dir} to close the directory too`,
  );
}
