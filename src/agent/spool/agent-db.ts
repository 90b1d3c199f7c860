import { join } from 'node:path';
import { openDatabase, type DB } from '../../shared/sqlite/open.js';

/** The agent keeps everything it must not lose in one SQLite file in --data-dir. */
export function openAgentDb(dataDir: string): DB {
  return openDatabase(dataDir === ':memory:' ? ':memory:' : join(dataDir, 'agent.db'));
}
