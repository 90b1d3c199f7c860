import { startAgent } from '../agent/agent.js';
import { agentModules } from '../agent/modules.js';
import { createRootLogger } from '../shared/log/logger.js';
import { AGENT_DEFAULT_BACKOFF, parseDuration } from '../shared/retry/backoff.js';
import { listenAddressFlag, parseFlags, usageError } from './args.js';
import { waitForShutdown } from './shutdown.js';

const HELP = `Usage: verdict agent --kas-address <url> --token-file <file> [flags]

Runs the in-cluster agent. It gets its configuration (.gitlab/agents/<name>/config.yaml)
from the server, follows dropped flows from Hubble Relay and Falco events, and sends
alerts to the server through a durable spool.

Flags:
  --kas-address <url>          server address (required): grpc://host:port or grpcs://host:port
                               (the server's --grpc-addr), or ws://host:port/-/kubernetes-agent/ or
                               wss://… (its --http-addr; the trailing slash is required). Repeat it
                               (or give a comma-separated list) for server replicas sharing a Kafka
                               alert log: the agent moves to the next when one fails (grpc(s):// only)
  --token-file <file>          file holding the agent token (required); re-read on every
                               reconnect, so a rotated token needs no restart
  --ca-cert-file <file>        CA certificate to trust in addition to the system's, for grpcs:// and wss://
  --data-dir <dir>             spool and state (default .data/agent)
  --policies <file|dir>        local policy manifests; repeatable
  --kubeconfig <file>          kubeconfig for the Kubernetes API server when not running in a pod,
                               as kubectl's flag (contexts, CA, client certificates, tokens, exec
                               plugins); without it KUBECONFIG, then the pod's service account.
                               cilium.kubernetes_policies: auto watches policies when one is given
  --observability-addr <addr>  /metrics, /healthz, /readyz (default 127.0.0.1:8081; "" disables)
  --spool-max-bytes <n>        bound of the alert spool (default 268435456)
  --reconnect-initial <d>      first reconnect backoff (default 10s)
  --reconnect-max <d>          longest reconnect backoff (default 5m)
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('agent', argv, {
    'kas-address': { type: 'string', multiple: true },
    'token-file': { type: 'string' },
    'ca-cert-file': { type: 'string' },
    'data-dir': { type: 'string', default: '.data/agent' },
    policies: { type: 'string', multiple: true, default: [] },
    kubeconfig: { type: 'string' },
    'observability-addr': { type: 'string', default: '127.0.0.1:8081' },
    'spool-max-bytes': { type: 'string', default: String(256 * 1024 * 1024) },
    'reconnect-initial': { type: 'string' },
    'reconnect-max': { type: 'string' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values['kas-address']?.length) throw usageError('verdict agent: --kas-address is required (e.g. grpc://verdict-server.verdict.svc:8150)');
  if (!values['token-file']) throw usageError('verdict agent: --token-file is required (a file with the token `verdict agents register` printed)');
  if (values['observability-addr'])
    listenAddressFlag('agent', 'observability-addr', values['observability-addr'], 'host:port, e.g. 127.0.0.1:8081, or "" to turn it off');
  const spoolMaxBytes = Number(values['spool-max-bytes']);
  if (!Number.isInteger(spoolMaxBytes) || spoolMaxBytes <= 0) throw usageError('verdict agent: --spool-max-bytes must be a positive whole number of bytes');
  const log = createRootLogger({ name: 'verdict-agent' });
  const agent = await startAgent(
    {
      kasAddress: values['kas-address'].join(','),
      tokenFile: values['token-file'],
      dataDir: values['data-dir'],
      caCertFile: values['ca-cert-file'],
      observabilityAddr: values['observability-addr'],
      spoolMaxBytes,
      backoff: {
        ...AGENT_DEFAULT_BACKOFF,
        ...(values['reconnect-initial'] ? { initialMs: parseDuration(values['reconnect-initial'], '--reconnect-initial') } : {}),
        ...(values['reconnect-max'] ? { maxMs: parseDuration(values['reconnect-max'], '--reconnect-max') } : {}),
      },
      modules: agentModules({ policyPaths: values.policies, kubeconfig: values.kubeconfig }),
    },
    log,
  );
  await waitForShutdown(log);
  await agent.stop();
  return 0;
}
