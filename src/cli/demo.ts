import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startAgent } from '../agent/agent.js';
import { agentModules } from '../agent/modules.js';
import { scenarioFlows } from '../peers/hubble-relay/demo-scenario.js';
import { HubbleRelayPeer } from '../peers/hubble-relay/relay-peer.js';
import { startFalcoPoster } from '../peers/falco/falco-poster.js';
import type { AgentRegistry } from '../server/agents/agent-registry.js';
import { startServer } from '../server/server.js';
import { demoWebhooks } from '../server/webhooks/demo.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../shared/config/kafka-config.js';
import { splitHostPort } from '../shared/config/host-port.js';
import { listenError } from '../shared/config/listen-error.js';
import { ConfigError } from '../shared/config/schema.js';
import { GRPC_ADDR_HINT, LISTEN_ADDR_HINT } from '../shared/config/server-config.js';
import { createRootLogger, errText } from '../shared/log/logger.js';
import { Closers } from '../shared/lifecycle/closers.js';
import { listenAddressFlag, parseFlags, usageError } from './args.js';
import { waitForShutdown } from './shutdown.js';
import { DEMO_GITOPS, startDemoKubernetes, type DemoKubernetes } from './demo-kubernetes.js';
import { isVerdictError } from '../shared/errors.js';

const HELP = `Usage: verdict demo [flags]

Runs Verdict's whole pipeline on one machine: the server (SQLite), an agent, a
built-in Hubble Relay that streams a shop's allowed and dropped flows over the
real gRPC protocol, and a built-in Falco source posting Falco's JSON events. The
agent is configured from a git configuration project created in the data dir,
with the labelled example policies from policies/.

Flags:
  --data-dir <dir>         (default .data/demo)
  --http-addr <host:port>  feed and web page (default 127.0.0.1:8080)
  --grpc-addr <host:port>  agent API (default 127.0.0.1:8150, or a free port when that
                           one is taken, e.g. by another demo)
  --falco-addr <host:port> where the agent takes Falco events; point a real Falco's
                           http_output here (default 127.0.0.1:2801, Falcosidekick's port,
                           or a free port when that one is taken)
  --interval <ms>          time between built-in events (default 1500)
  --webhook <url>          also deliver alerts to this URL as signed generic webhooks
                           (docs/webhooks.md); a local address is allowed for the demo
  --webhook-secret <whsec_...>  the endpoint's Standard Webhooks secret (default: a new one, printed)
  --kafka <host:port[,...]>  keep the alert log in this Kafka (topics verdict.log, verdict.tokens,
                           export verdict.alerts; docs/kafka.md); a second demo with the same
                           --kafka and another --data-dir joins as a second server replica with
                           an agent of its own (demo-2, demo-3, …: its own config.yaml and Falco
                           input), and each demo's feed shows the alerts of both
  --kubernetes             also run a real Kubernetes API server (scripts/kube.sh; build it once
                           with \`bash scripts/kube.sh install\`) with the Cilium policy CRDs, and
                           have the agent watch policies there: the demo prints a kubeconfig and
                           a kubectl command that applies a labelled policy; and have it keep
                           manifests/ of the configuration project synced there (GitOps, in
                           namespace shop only). Stopped with the demo; its objects do not
                           survive a restart
`;

const DEFAULT_GRPC_ADDR = '127.0.0.1:8150';
const DEFAULT_FALCO_ADDR = '127.0.0.1:2801';

/**
 * Where the demo listens: the address given as a flag, or its default, or a free
 * port on the same host when something (another demo, say) already listens
 * there, so that `verdict demo --data-dir D --http-addr 127.0.0.1:PORT` runs
 * beside a first demo. An address given as a flag is used as it is (port 0: a
 * free port): a clash there is an error, which names the flag.
 */
async function demoListenAddr(given: string | undefined, fallback: string, what: string, flag: string): Promise<string> {
  const addr = given ?? fallback;
  const { host, port } = splitHostPort(addr);
  const tryListen = (port: number) =>
    new Promise<{ port: number } | { error: Error }>((done) => {
      const s = createServer();
      s.once('error', (error) => done({ error }));
      s.listen(port, host, () => {
        const a = s.address();
        s.close(() => done(typeof a === 'object' && a ? { port: a.port } : { error: new Error(`no port for ${host}`) }));
      });
    });
  const first = await tryListen(port);
  const free = 'port' in first || given !== undefined ? first : await tryListen(0);
  if ('error' in free) throw usageError(`verdict demo: ${listenError(what, addr, free.error, flag).message}`);
  return `${host.includes(':') ? `[${host}]` : host}:${free.port}`;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const AGENT = 'demo';

function git(dir: string, ...args: string[]): string {
  return execFileSync('git', ['-C', dir, '-c', 'user.name=Verdict demo', '-c', 'user.email=demo@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], {
    encoding: 'utf8',
  }).trim();
}

/**
 * The demo's agent: the first of demo, demo-2, demo-3, … that is not registered or whose configuration project is this
 * demo's. Demos on one Kafka share their agents through the tokens topic: without this, a second demo would take the
 * first one's agent, with the first one's config.yaml and Falco input.
 */
function demoAgentName(agents: AgentRegistry, project: string): string {
  for (let i = 1; ; i++) {
    const name = i === 1 ? AGENT : `${AGENT}-${i}`;
    const a = agents.get(name);
    if (!a || a.config_project === project) return name;
  }
}

/** Creates or updates the demo's configuration project; commits only when something changed. */
function prepareConfigProject(dir: string, agent: string, relayAddr: string, falcoAddr: string, kubernetes: boolean): void {
  mkdirSync(join(dir, '.gitlab/agents', agent), { recursive: true });
  if (!existsSync(join(dir, '.git'))) git(dir, 'init', '-q', '-b', 'main');
  mkdirSync(join(dir, 'policies'), { recursive: true });
  if (kubernetes) {
    for (const [file, text] of Object.entries(DEMO_GITOPS.files)) {
      mkdirSync(join(dir, file, '..'), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
  }
  for (const f of readdirSync(join(ROOT, 'policies'))) {
    if (/\.(ya?ml|json)$/.test(f)) copyFileSync(join(ROOT, 'policies', f), join(dir, 'policies', f));
  }
  writeFileSync(
    join(dir, '.gitlab/agents', agent, 'config.yaml'),
    [
      '# Written by `verdict demo`. Edit and commit to see the agent pick it up.',
      'cilium:',
      `  hubble_relay_address: ${relayAddr}`,
      '  cluster_name: demo',
      '  policies:',
      '    - glob: "policies/**/*.{yaml,yml,json}"',
      '  dedup_window: 5s',
      // The agent always knows it runs outside a pod here; 'auto' would watch only in one.
      ...(kubernetes ? ['  kubernetes_policies: on  # the API server of verdict demo --kubernetes'] : []),
      '  reconnect:',
      '    initial_backoff: 1s',
      '    max_backoff: 10s',
      'falco:',
      '  http:',
      `    listen: ${falcoAddr}`,
      '  dedup_window: 5s',
      ...(kubernetes ? DEMO_GITOPS.config : []),
      '',
    ].join('\n'),
  );
  git(dir, 'add', '-A');
  if (git(dir, 'status', '--porcelain')) git(dir, 'commit', '-q', '-m', 'Verdict demo configuration');
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags('demo', argv, {
    'data-dir': { type: 'string', default: '.data/demo' },
    'http-addr': { type: 'string', default: '127.0.0.1:8080' },
    'grpc-addr': { type: 'string' },
    'falco-addr': { type: 'string' },
    interval: { type: 'string', default: '1500' },
    webhook: { type: 'string' },
    'webhook-secret': { type: 'string' },
    kafka: { type: 'string' },
    kubernetes: { type: 'boolean' },
    help: { type: 'boolean' },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  listenAddressFlag('demo', 'http-addr', values['http-addr'], LISTEN_ADDR_HINT);
  if (values['grpc-addr'] !== undefined) listenAddressFlag('demo', 'grpc-addr', values['grpc-addr'], GRPC_ADDR_HINT);
  if (values['falco-addr'] !== undefined) listenAddressFlag('demo', 'falco-addr', values['falco-addr'], 'host:port, e.g. 127.0.0.1:2801');
  const dataDir = resolve(values['data-dir']);
  if (values['webhook-secret'] && !values.webhook) throw usageError('verdict demo: --webhook-secret needs --webhook <url>');
  const webhook = values.webhook ? demoWebhooks(values.webhook, values['webhook-secret']) : undefined;
  let kafka: KafkaConfig | undefined;
  try {
    kafka = values.kafka ? kafkaConfigForBootstrap(values.kafka, {}, '--kafka') : undefined;
  } catch (e) {
    if (e instanceof ConfigError)
      throw usageError(`verdict demo: --kafka: ${e.issues[0]!.message} (give host:port of a broker, e.g. 127.0.0.1:9092; scripts/kafka.sh start prints one)`);
    throw e;
  }
  const interval = Number(values.interval);
  const grpcAddr = values['grpc-addr'] ?? (await demoListenAddr(undefined, DEFAULT_GRPC_ADDR, 'for agents', '--grpc-addr'));
  // Checked here even when given: the agent's Falco module would retry an address it cannot listen on
  // without end, naming falco.http.listen in a config file the demo writes.
  const falcoAddr = await demoListenAddr(values['falco-addr'], DEFAULT_FALCO_ADDR, 'for Falco events', '--falco-addr');
  const log = createRootLogger({ name: 'verdict-demo' });

  // First, before anything listens: the control plane is what most often cannot start.
  let kube: DemoKubernetes | undefined;
  if (values.kubernetes) {
    try {
      kube = await startDemoKubernetes(join(dataDir, 'kubernetes'));
    } catch (e) {
      if (!isVerdictError(e)) throw e;
      process.stderr.write(`verdict demo: ${e.message}\n`);
      return 1;
    }
  }
  // Everything the demo opens is stopped with it, in reverse, also when it fails to start
  // (a Relay peer left listening would keep the process from exiting after the error).
  const closers = new Closers();
  if (kube) closers.add('Kubernetes control plane', kube, (k) => k.stop());
  try {
    const relay = closers.add('Hubble Relay peer', new HubbleRelayPeer(), (r) => r.close());
    const relayAddr = await relay.listen('127.0.0.1:0');
    const project = join(dataDir, 'config-project');

    const server = closers.add(
      'server',
      await startServer(
        {
          data_dir: join(dataDir, 'server'),
          http_addr: values['http-addr'],
          grpc_addr: grpcAddr,
          config_poll_interval: 2000,
          gitops_poll_interval: 2000,
          ...(webhook ? { webhooks: webhook.config } : {}),
          ...(kafka ? { kafka } : {}),
        },
        log.child({ component: 'server' }),
      ),
      (x) => x.close(),
    );

    const agent = demoAgentName(server.agents, project);
    prepareConfigProject(project, agent, relayAddr, falcoAddr, kube !== undefined);
    const tokenFile = join(dataDir, 'agent-token');
    const held = existsSync(tokenFile) ? server.agents.authenticate(readFileSync(tokenFile, 'utf8').trim()) : undefined;
    if (held?.name !== agent) {
      // An agent whose token was revoked (or its file lost, or that of another demo's agent) keeps its registration and gets a new token.
      const token = server.agents.get(agent) ? server.agents.createToken(agent).token : server.agents.register(agent, project).token;
      writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    }
    const feedTokenFile = join(dataDir, 'feed-token');
    let feedToken = existsSync(feedTokenFile) ? readFileSync(feedTokenFile, 'utf8').trim() : '';
    if (!feedToken || !server.tokens.verify(feedToken)) {
      feedToken = server.tokens.create('demo', 'write').token;
      writeFileSync(feedTokenFile, `${feedToken}\n`, { mode: 0o600 });
    }

    closers.add(
      'agent',
      await startAgent(
        {
          kasAddress: `grpc://${server.grpcAddress}`,
          tokenFile,
          dataDir: join(dataDir, 'agent'),
          observabilityAddr: '127.0.0.1:0',
          spoolMaxBytes: 256 * 1024 * 1024,
          backoff: { initialMs: 500, maxMs: 5000, factor: 2, jitter: true },
          modules: agentModules({ policyPaths: [], ...(kube ? { kubeconfig: kube.agentKubeconfig } : {}) }),
        },
        log.child({ component: 'agent' }),
      ),
      (a) => a.stop(),
    );

    let step = 0;
    const relayTimer = setInterval(() => relay.push(scenarioFlows(step++)), interval);
    closers.defer('Relay flows', () => clearInterval(relayTimer));
    const falcoAbort = new AbortController();
    closers.defer('Falco source', () => falcoAbort.abort());
    startFalcoPoster({ url: `http://${falcoAddr}/`, intervalMs: interval * 2, signal: falcoAbort.signal, log: log.child({ component: 'falco-source' }) });

    const url = `http://${server.httpAddress}/`;
    process.stdout.write(
      [
        '',
        `Verdict demo is running.`,
        // The token rides in the fragment, which browsers never send to the server; the page keeps it and drops it from the address bar.
        `  feed:        ${url}#token=${feedToken}  (web page; open this link)`,
        `  feed API:    curl -H "Authorization: Bearer ${feedToken}" ${url}api/v1/alerts`,
        `  feed token:  ${feedToken}  (also in ${feedTokenFile})`,
        `  agent:       ${agent}${kafka ? '  (its own config.yaml and Falco input; the feed shows the alerts of every demo on this Kafka)' : ''}`,
        `  Falco input: http://${falcoAddr}/  (point Falco's http_output here)`,
        `  agent API:   grpc://${server.grpcAddress}  (verdict agent --kas-address)`,
        `  config:      ${project}/.gitlab/agents/${agent}/config.yaml (commit changes; the agent picks them up)`,
        ...(kafka
          ? [
              `  kafka:       ${kafka.brokers.join(',')}: alert log ${kafka.topic_prefix}.log, export ${kafka.export_topic} (kcat -b ${kafka.brokers[0]} -t ${kafka.export_topic} -C)`,
            ]
          : []),
        ...(kube
          ? [
              `  kubernetes:  ${kube.server}  (a real API server with the Cilium policy CRDs; the agent watches its policies)`,
              `  kubeconfig:  ${kube.kubeconfig}  (admin; the agent has its own, with the RBAC of deploy/agent/, GitOps narrowed to shop)`,
              `  try:         ${kube.kubectl} --kubeconfig ${kube.kubeconfig} apply -f ${kube.examplePolicy}`,
              '               then new alerts name shop/payments-from-cart-only; `… delete -f` the same file and they stop',
              `  gitops:      ${project}/manifests/ synced to namespace ${DEMO_GITOPS.namespace} (commit changes there); status: curl -H "Authorization: Bearer ${feedToken}" ${url}api/v1/agents/${agent}`,
            ]
          : []),
        ...(webhook
          ? [
              `  webhook:     ${values.webhook} (signed, secret ${webhook.secret})`,
              `               deliveries: GET ${url}api/v1/admin/integrations/demo-webhook/deliveries with a token from \`verdict tokens create --name me --scope admin --data-dir ${join(dataDir, 'server')}\``,
            ]
          : []),
        'Stop with Ctrl-C.',
        '',
      ].join('\n'),
    );

    await waitForShutdown(log);
    return 0;
  } finally {
    await closers.close().catch((e: unknown) => log.warn({ error: errText(e) }, 'Stopping the demo failed'));
  }
}
