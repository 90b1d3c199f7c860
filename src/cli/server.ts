import {
  GRPC_ADDR_HINT,
  LISTEN_ADDR_HINT,
  SERVER_CONFIG_KEYS,
  SERVER_DEFAULTS,
  loadServerConfigFile,
  type ServerConfig,
} from '../shared/config/server-config.js';
import { createRootLogger } from '../shared/log/logger.js';
import { parseDuration } from '../shared/retry/backoff.js';
import { writeSync } from 'node:fs';
import { DELIVERY_STEPS, type DeliveryStep } from '../server/kafka/delivery.js';
import { startServer, StoppedWhileStarting, type ServerTestHooks } from '../server/server.js';
import { listenAddressFlag, parseFlags, usageError } from './args.js';
import { waitForShutdown } from './shutdown.js';

/** `text` wrapped at `width` columns: its first line starts at column `start`, the others at `indent`. */
function wrap(text: string, start: number, indent: number, width: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const room = width - (lines.length === 0 ? start : indent);
    if (line && line.length + 1 + word.length > room) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

// The config keys come from the schema, so that a new key is in the help as soon as the server reads it.
const HELP = `Usage: verdict server [flags]

Runs the Verdict server: the agent API (gRPC), the alert store (SQLite) and the feed (HTTP).

Flags (override the same keys in --config):
  --config <file>            server YAML config (keys: ${wrap(`${SERVER_CONFIG_KEYS.join(', ')};`, 55, 29, 105)}
                             see docs/configuration.md)
  --data-dir <dir>           where the SQLite store lives (default ${SERVER_DEFAULTS.data_dir})
  --http-addr <host:port>    feed API, web page, /metrics, /healthz (default ${SERVER_DEFAULTS.http_addr})
  --grpc-addr <host:port>    agent API (default ${SERVER_DEFAULTS.grpc_addr})
  --config-poll-interval <d> how often configuration projects are checked (default 20s)
  --tls-cert-file <file>     serve both listeners over TLS with this PEM certificate (chain):
                             agents then use grpcs:// or wss://, feed clients https://
  --tls-key-file <file>      the certificate's PEM private key (required with --tls-cert-file)

Agents connect to --grpc-addr (grpc://, grpcs://) or to --http-addr under
/-/kubernetes-agent/ (ws://, wss://). Manage their tokens with \`verdict agents\`.

Webhooks (signed generic, GitLab, Alertmanager, Slack) are configured in --config under
webhooks: {allow_private_addresses, external_url, integrations: [{name, type, url, secrets,
key, route, group_window, headers, timeout, retry_schedule, concurrency, repeat_milestones}]}
or through /api/v1/admin/integrations; see docs/webhooks.md.

Several servers share one alert log with kafka: {brokers: [host:port, ...], topic_prefix,
export_topic, tls, sasl, ...} in --config: each replica stores every alert, agents may use
any of them (repeat --kas-address), webhooks go out once; see docs/kafka.md.
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('server', argv, {
    config: { type: 'string' },
    'data-dir': { type: 'string' },
    'http-addr': { type: 'string' },
    'grpc-addr': { type: 'string' },
    'config-poll-interval': { type: 'string' },
    'tls-cert-file': { type: 'string' },
    'tls-key-file': { type: 'string' },
    help: { type: 'boolean' },
    // Tests only (test/kafka/crash.test.ts), so not in the help: SIGKILL at that step of the first
    // Kafka hand-on that records a webhook delivery, to show what a crash there costs.
    'test-kill-delivery-at': { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const cfg: ServerConfig = values.config ? loadServerConfigFile(values.config) : { ...SERVER_DEFAULTS };
  if (values['data-dir']) cfg.data_dir = values['data-dir'];
  // An empty flag is refused, not taken for "not given".
  if (values['http-addr'] !== undefined) cfg.http_addr = listenAddressFlag('server', 'http-addr', values['http-addr'], LISTEN_ADDR_HINT);
  if (values['grpc-addr'] !== undefined) cfg.grpc_addr = listenAddressFlag('server', 'grpc-addr', values['grpc-addr'], GRPC_ADDR_HINT);
  if (values['config-poll-interval']) cfg.config_poll_interval = parseDuration(values['config-poll-interval'], '--config-poll-interval');
  if (Boolean(values['tls-cert-file']) !== Boolean(values['tls-key-file']))
    throw usageError('verdict server: give --tls-cert-file and --tls-key-file together');
  if (values['tls-cert-file'] && values['tls-key-file']) cfg.tls = { cert_file: values['tls-cert-file'], key_file: values['tls-key-file'] };
  const log = createRootLogger({ name: 'verdict-server' });
  // Listened for from the start: a replica that listens while its Kafka consumers join may be stopped then.
  const stop = new AbortController();
  const signalled = waitForShutdown(log).then(() => stop.abort());
  let server;
  try {
    server = await startServer(cfg, log, testHooks(values['test-kill-delivery-at']), stop.signal);
  } catch (e) {
    if (e instanceof StoppedWhileStarting) return 0;
    throw e;
  }
  await signalled;
  await server.close();
  return 0;
}

function testHooks(killAt: string | undefined): ServerTestHooks {
  if (killAt === undefined) return {};
  if (!DELIVERY_STEPS.includes(killAt as DeliveryStep)) throw usageError(`verdict server: --test-kill-delivery-at must be one of ${DELIVERY_STEPS.join(', ')}`);
  return {
    onDeliveryStep(step, at) {
      if (step !== killAt) return;
      // Synchronously, so the line is out before the signal.
      writeSync(
        2,
        `${JSON.stringify({ level: 'warn', time: Date.now(), msg: `Test fault injection: killing this replica (--test-kill-delivery-at ${step})`, ...at })}\n`,
      );
      process.kill(process.pid, 'SIGKILL');
    },
  };
}
