import { SERVER_DEFAULTS, loadServerConfigFile, type ServerConfig } from '../shared/config/server-config.js';
import { createRootLogger } from '../shared/log/logger.js';
import { parseDuration } from '../shared/retry/backoff.js';
import { startServer } from '../server/server.js';
import { parseFlags } from './args.js';
import { waitForShutdown } from './shutdown.js';

const HELP = `Usage: verdict server [flags]

Runs the Verdict server: the agent API (gRPC), the alert store (SQLite) and the feed (HTTP).

Flags (override the same keys in --config):
  --config <file>            server YAML config (keys: data_dir, http_addr, grpc_addr, config_poll_interval)
  --data-dir <dir>           where the SQLite store lives (default ${SERVER_DEFAULTS.data_dir})
  --http-addr <host:port>    feed API, web page, /metrics, /healthz (default ${SERVER_DEFAULTS.http_addr})
  --grpc-addr <host:port>    agent API (default ${SERVER_DEFAULTS.grpc_addr})
  --config-poll-interval <d> how often configuration projects are checked (default 20s)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('server', argv, {
    config: { type: 'string' },
    'data-dir': { type: 'string' },
    'http-addr': { type: 'string' },
    'grpc-addr': { type: 'string' },
    'config-poll-interval': { type: 'string' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const cfg: ServerConfig = values.config ? loadServerConfigFile(values.config) : { ...SERVER_DEFAULTS };
  if (values['data-dir']) cfg.data_dir = values['data-dir'];
  if (values['http-addr']) cfg.http_addr = values['http-addr'];
  if (values['grpc-addr']) cfg.grpc_addr = values['grpc-addr'];
  if (values['config-poll-interval']) cfg.config_poll_interval = parseDuration(values['config-poll-interval'], '--config-poll-interval');
  const log = createRootLogger({ name: 'verdict-server' });
  const server = await startServer(cfg, log);
  await waitForShutdown(log);
  await server.close();
  return 0;
}
