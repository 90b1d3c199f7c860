import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { splitHostPort } from '../shared/config/host-port.js';
import { listenError } from '../shared/config/listen-error.js';
import type { ServerConfig } from '../shared/config/server-config.js';
import { moduleLogger, type Logger } from '../shared/log/logger.js';
import type { DB } from '../shared/sqlite/open.js';
import { Closers } from '../shared/lifecycle/closers.js';
import { VERSION } from '../shared/version.js';
import { registerAdminRoutes } from './admin/routes.js';
import { scoped } from './feed/auth.js';
import { AgentRegistry } from './agents/agent-registry.js';
import { RevocationWatcher } from './agents/revocation-watcher.js';
import { AgentConnections } from './agents/connections.js';
import { registerAgentRoutes } from './agents/routes.js';
import { FeedTokens } from './auth/feed-tokens.js';
import { ProjectPollers } from './config/project-poller.js';
import { buildHttpServer } from './feed/http-server.js';
import { AlertStore } from './store/alert-store.js';
import { openServerDb } from './store/server-db.js';
import { RETENTION_DEFAULTS, startRetention } from './store/retention.js';
import { addTunnelServices, type StreamRegistry } from './tunnel/grpc-service.js';
import { grpcServerCredentials, loadTls, type TlsMaterial } from './tunnel/tls.js';
import { registerAgentWebSocket } from './tunnel/ws-route.js';
import { AGENT_WS_PATH, MAX_MESSAGE_BYTES } from '../shared/agent-api.js';
import { startWebhooks, type WebhooksService } from './webhooks/service.js';
import { startKafkaReplica, type KafkaReplica, type KafkaReplicaOptions } from './kafka/replica.js';
import type { ModuleAlerts, StartedServerModule } from './module.js';
import { serverModules } from './modules.js';

export interface RunningServer {
  httpAddress: string; // host:port actually bound
  grpcAddress: string;
  db: DB;
  store: AlertStore;
  agents: AgentRegistry;
  tokens: FeedTokens;
  streams: StreamRegistry;
  webhooks: WebhooksService;
  /** Set when the server is a replica on a Kafka alert log (config `kafka:`). */
  kafka?: KafkaReplica | undefined;
  close(): Promise<void>;
}

// gRPC limits of the original KAS: 10 MiB messages, keepalive pings every 55 s.
const GRPC_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 55_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 20_000,
};

/** What only tests pass (through `verdict server`'s test flags). */
export interface ServerTestHooks {
  onDeliveryStep?: KafkaReplicaOptions['onDeliveryStep'];
}

/** Thrown by startServer when `stop` is aborted while it waits for the Kafka consumer groups: everything it opened is closed. */
export class StoppedWhileStarting extends Error {}

/**
 * Starts the server. `stop` (SIGTERM, say) ends a start that waits for the
 * Kafka consumers to join their groups, which after a crash lasts up to
 * kafka.session_timeout while the server already listens.
 */
export async function startServer(cfg: ServerConfig, log: Logger, testHooks: ServerTestHooks = {}, stop?: AbortSignal): Promise<RunningServer> {
  // Everything opened is pushed here at once: a start that fails halfway closes
  // what it opened, and close() runs the same stack in reverse.
  const closers = new Closers();
  const db = closers.add('server database', openServerDb(cfg.data_dir, moduleLogger('store', log)), (d) => d.close());
  const store = new AlertStore(db);
  const agents = new AgentRegistry(db);
  const tokens = new FeedTokens(db);
  // The agent API's open calls: for revocation, and for the agents API's connection status.
  const streams = new AgentConnections((id) => agents.nameOfToken(id));
  const pollers = new ProjectPollers(cfg.config_poll_interval, moduleLogger('config', log));
  // Before the agent API listens: every stored alert must pass through the webhook outbox hook.
  const webhooks = closers.add(
    'webhooks',
    startWebhooks({ db, store, config: cfg.webhooks, log: moduleLogger('webhooks', log), enqueueOnStore: !cfg.kafka }),
    (w) => w.close(),
  );
  let kafka: KafkaReplica | undefined;
  if (cfg.kafka) {
    const kafkaConfig = cfg.kafka;
    kafka = await closers.start(() =>
      startKafkaReplica({
        config: kafkaConfig,
        db,
        store,
        agents,
        tokens,
        webhooks: webhooks.outbox,
        log: moduleLogger('kafka', log),
        onDeliveryStep: testHooks.onDeliveryStep,
      }),
    );
    closers.add('kafka', kafka, (k) => k.close());
  }
  let ready = false;
  const tls: TlsMaterial | undefined = await closers.start(() => (cfg.tls ? loadTls(cfg.tls) : undefined));

  const sink = kafka?.sink ?? { accept: async (agent: string, events: Parameters<AlertStore['ingest']>[1]) => store.ingest(agent, events) };
  const changeStatus = kafka ? kafka.changeStatus.bind(kafka) : async (id: number, to: 'resolved', actor: string) => store.setStatus(id, to, actor);
  // Alerts a module raises on the server go the way the agents' do (the store, or the Kafka log).
  const moduleAlerts: ModuleAlerts = {
    raise: async (agent, events) => {
      await sink.accept(agent, events);
    },
    async resolve(agent, source, fingerprints, actor) {
      if (fingerprints.length === 0) return 0;
      const wanted = new Set(fingerprints);
      let n = 0;
      let cursor: string | undefined;
      do {
        const page = store.list({ source: [source], agent: [agent], status: ['triggered', 'acknowledged'], limit: 500, ...(cursor ? { cursor } : {}) });
        for (const a of page.alerts) if (wanted.has(a.fingerprint) && (await changeStatus(a.id, 'resolved', actor))) n++;
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
      return n;
    },
  };

  const grpcServer = new grpc.Server(GRPC_OPTIONS);
  addTunnelServices(
    grpcServer,
    {
      agents,
      pollers,
      log,
      config: cfg,
      sink,
    },
    streams,
  );
  const g = splitHostPort(cfg.grpc_addr);
  const grpcPort = await closers.start(
    () =>
      new Promise<number>((resolve, reject) => {
        grpcServer.bindAsync(`${g.host.includes(':') ? `[${g.host}]` : g.host}:${g.port}`, grpcServerCredentials(tls), (err, port) =>
          err ? reject(listenError('for agents', cfg.grpc_addr, err, 'grpc_addr (--grpc-addr)')) : resolve(port),
        );
      }),
  );
  // Agents' streams are ended first, with a status that says why: left to the grace period, they were cut as
  // CANCELLED, which the agent cannot tell from a proxy resetting a stream.
  closers.defer('agent API (gRPC)', () => {
    streams.shutDown();
    return shutDownGrpc(grpcServer);
  });

  const http: FastifyInstance = await closers.start(() =>
    buildHttpServer({
      store,
      tokens,
      log: moduleLogger('feed', log),
      ready: () => ready,
      notReady: kafka ? () => kafka.notReady() : undefined,
      changeStatus: kafka ? (id, to, actor) => kafka.changeStatus(id, to, actor) : undefined,
      tls,
    }),
  );
  closers.add('HTTP listener', http, (h) => h.close());
  const agentWs = await closers.start(() => registerAgentWebSocket(http, { grpcServer, log: moduleLogger('tunnel', log) }));
  closers.add('agent WebSocket', agentWs, (w) => w.close());
  registerAdminRoutes(http, { agents, tokens, streams, log: moduleLogger('admin', log) });
  const admin = scoped(tokens, 'admin');
  for (const mod of serverModules) mod.adminRoutes?.(http, { config: cfg, log: moduleLogger(mod.name, log), db, admin });
  registerAgentRoutes(http, { agents, tokens, connections: streams, config: cfg, modules: serverModules });
  const h = splitHostPort(cfg.http_addr);
  await closers.start(() =>
    http.listen({ host: h.host, port: h.port }).catch((e: unknown) => {
      throw listenError('for HTTP', cfg.http_addr, e, 'http_addr (--http-addr)');
    }),
  );
  const httpAddr = http.server.address();
  const httpAddress = typeof httpAddr === 'object' && httpAddr ? `${cfg.http_addr.replace(/:\d+$/, '')}:${httpAddr.port}` : cfg.http_addr;
  const grpcAddress = `${cfg.grpc_addr.replace(/:\d+$/, '')}:${grpcPort}`;
  // Modules' own listeners and loops (the CI tunnel's Kubernetes API proxy), once the agent API is served.
  for (const mod of serverModules) {
    const m: StartedServerModule | undefined = await closers.start(() =>
      mod.start?.({ config: cfg, log: moduleLogger(mod.name, log), db, agents, tls, alerts: moduleAlerts, pollers }),
    );
    if (m) closers.add(`module ${mod.name}`, m, (x) => x.close());
  }
  const revocations = new RevocationWatcher(agents, streams, moduleLogger('tunnel', log));
  revocations.start();
  closers.defer('revocation watcher', () => revocations.stop());
  const retention = startRetention({ store, config: { ...RETENTION_DEFAULTS, ...cfg.retention }, log: moduleLogger('store', log) });
  closers.defer('retention', () => retention.stop());
  ready = true;
  closers.defer('readiness', () => {
    ready = false;
  });
  if (kafka) {
    // Listening already, so probes get /healthz 200 and /readyz 503 (joining) while the
    // consumers join, which after a crash lasts until the brokers drop the dead
    // process's members. What the brokers refuse in the join still fails the start.
    log.info(
      { http_addr: httpAddress, grpc_addr: grpcAddress },
      'Kafka: listening; joining the consumer groups, /readyz answers 503 until this replica has joined and caught up',
    );
    const k = kafka;
    await closers.start(() => (stop ? untilAborted(k.joined, stop) : k.joined));
  }
  log.info(
    {
      http_addr: httpAddress,
      grpc_addr: grpcAddress,
      data_dir: cfg.data_dir,
      version: VERSION,
      tls: Boolean(tls),
      agent_websocket_path: AGENT_WS_PATH,
    },
    'Verdict server started',
  );

  return {
    httpAddress,
    grpcAddress,
    db,
    store,
    agents,
    tokens,
    streams,
    webhooks,
    kafka,
    close: () => closers.close(),
  };
}

/** Lets calls in flight finish for up to 2 s, then cuts them. */
function shutDownGrpc(server: grpc.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 2000);
    server.tryShutdown(() => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** `p`, or a StoppedWhileStarting rejection as soon as `stop` is aborted. */
function untilAborted<T>(p: Promise<T>, stop: AbortSignal): Promise<T> {
  if (stop.aborted) return Promise.reject(new StoppedWhileStarting('stopped while starting'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StoppedWhileStarting('stopped while starting'));
    stop.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        stop.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        stop.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
