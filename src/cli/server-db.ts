import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openServerDb, SERVER_DB_FILE } from '../server/store/server-db.js';
import { loadServerDataDir, SERVER_DEFAULTS } from '../shared/config/server-config.js';
import type { FilesLog } from '../shared/sqlite/private-files.js';
import { usageError } from './args.js';

/** The flags every command on the server's database takes, as parseFlags options. */
export const SERVER_DB_FLAGS = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
} as const;

/** What the help of such commands says of them; `which` names the commands that need the database. */
export function serverDbFlagsHelp(which: string): string {
  return `--data-dir is the server's data directory, or --config <server.yaml> gives its data_dir
(default ${SERVER_DEFAULTS.data_dir}, relative to the current directory; the server may be
running; only data_dir is read, so the server's env: and file: references need not be set).
Without the server's database (server.db) there, ${which} refuses to run.`;
}

/** serverDbFlagsHelp of a command that takes them. */
export const SERVER_DB_FLAGS_HELP = serverDbFlagsHelp('the command');

/**
 * The server's data directory: --data-dir, else data_dir of --config, else the default, as `verdict server` resolves
 * it. A --config that cannot be read or has no usable data_dir is the user's flag to fix: a usage error (exit 2).
 */
export function serverDataDir(values: { config?: string | undefined; 'data-dir'?: string | undefined }, command: string): string {
  if (values['data-dir'] !== undefined) return values['data-dir'];
  if (!values.config) return SERVER_DEFAULTS.data_dir;
  try {
    return loadServerDataDir(values.config);
  } catch (e) {
    throw usageError(`verdict ${command}: --config: ${(e as Error).message}; give --config the server's server.yaml, or --data-dir its data directory`);
  }
}

/**
 * The server's database in dataDir, which must exist: opening it elsewhere would make an empty one, so a
 * mistyped or forgotten --data-dir would issue tokens nobody checks or list nothing. `verdict server` makes it
 * at its first start, `verdict agents register` too.
 */
export function openExistingServerDb(dataDir: string, command: string): ReturnType<typeof openServerDb> {
  const file = resolve(join(dataDir, SERVER_DB_FILE));
  if (!existsSync(file))
    throw usageError(
      `verdict ${command}: there is no Verdict server database at ${file}; give --data-dir the server's data_dir, or --config its server.yaml (the default, ${SERVER_DEFAULTS.data_dir}, is relative to the current directory; \`verdict server\` and \`verdict agents register\` create the database there, and \`npm start\`'s demo in .data/demo/server)`,
    );
  return openServerDb(dataDir, stderrNotes(command));
}

/**
 * The database's notes (a data directory other users can open, files narrowed to 0600) as plain lines on stderr:
 * stdout is the command's answer (`verdict agents list --json`), which a JSON log line there would break.
 */
export function stderrNotes(command: string): FilesLog {
  const say = (obj: Record<string, unknown>, msg: string) =>
    void process.stderr.write(`verdict ${command}: ${msg}${typeof obj.file === 'string' ? ` (${obj.file})` : ''}\n`);
  return { info: say, warn: say };
}
