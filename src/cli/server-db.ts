import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openServerDb, SERVER_DB_FILE } from '../server/store/server-db.js';
import { SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { usageError } from './args.js';

/**
 * The server's database in dataDir, which must exist: opening it elsewhere would make an empty one, so a
 * mistyped --data-dir would issue tokens nobody checks or report every token as unknown. The server makes
 * it at its first start, `verdict agents register` too.
 */
export function openExistingServerDb(dataDir: string, command: string): ReturnType<typeof openServerDb> {
  if (!existsSync(join(dataDir, SERVER_DB_FILE)))
    throw usageError(
      `verdict ${command}: ${dataDir} holds no Verdict server database (server.db); give --data-dir the server's data_dir (default ${SERVER_DEFAULTS.data_dir}), where \`verdict server\` and \`verdict agents register\` keep it`,
    );
  return openServerDb(dataDir);
}
