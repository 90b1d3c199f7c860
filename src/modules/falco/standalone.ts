import { readFileSync } from 'node:fs';
import { realpathSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseAgentConfig } from '../../server/config/agent-config.js';
import { createRootLogger, errText, moduleLogger } from '../../shared/log/logger.js';
import { AlertAggregator } from '../../agent/alerts/aggregator.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';
import { Spool } from '../../agent/spool/spool.js';
import { startFalco } from './agent.js';

// Runs the falco module alone with a data dir, without a server or tunnel:
// alerts stay in the agent's spool. Used by the crash test (kill -9 while Falco
// posts) and handy to try a falco block against a real Falco.
//
//   node dist/modules/falco/standalone.js --data-dir DIR --config config.yaml
//
// Prints one JSON line {"ready":true,"http":"host:port"} on stdout once the inputs run.

const USAGE = 'usage: standalone.js --data-dir <dir> --config <config.yaml with a falco block>';

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { 'data-dir': { type: 'string' }, config: { type: 'string' } }, strict: true }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!values['data-dir'] || !values.config) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const log = createRootLogger({ name: 'verdict-falco', destination: process.stderr });
  const { value } = parseAgentConfig(readFileSync(values.config, 'utf8'), values.config);
  if (!value.falco) {
    process.stderr.write(`${values.config} has no falco block\n`);
    return 2;
  }
  const db = openAgentDb(values['data-dir']);
  const outbox = new Spool(db, { maxBytes: 1024 * 1024 * 1024, log: moduleLogger('spool', log) });
  const alerts = new AlertAggregator(db, outbox, { log: moduleLogger('alerts', log) });
  alerts.start();
  const running = await startFalco(value.falco, { db, alerts, log: moduleLogger('falco', log) });
  process.stdout.write(`${JSON.stringify({ ready: true, http: running.httpAddress ?? null })}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await running.stop();
  alerts.stop();
  db.close();
  return 0;
}

function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`verdict falco standalone: ${errText(e)}\n`);
      process.exitCode = 1;
    },
  );
}
