import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { mkdirSync } from 'node:fs';
import { splitHostPort, type ServerConfig } from '../shared/config/server-config.js';
import { moduleLogger, type Logger } from '../shared/log/logger.js';
import type { DB } from '../shared/sqlite/open.js';
import { VERSION } from '../shared/version.js';
import { AgentRegistry } from './agents/agent-registry.js';
import { FeedTokens } from './auth/feed-tokens.js';
import { ProjectPollers } from './config/project-poller.js';
import { buildHttpServer } from './feed/http-server.js';
import { AlertStore } from './store/alert-store.js';
import { openServerDb } from './store/server-db.js';
import { addTunnelServices, StreamRegistry } from './tunnel/grpc-service.js';

export interface RunningServer {
  httpAddress: string; // host:port actually bound
  grpcAddress: string;
  db: DB;
  store: AlertStore;
  agents: AgentRegistry;
  tokens: FeedTokens;
  streams: StreamRegistry;
  close(): Promise<void>;
}

// gRPC limits of the original KAS: 10 MiB messages, keepalive pings every 55 s.
const GRPC_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': 10 * 1024 * 1024,
  'grpc.keepalive_time_ms': 55_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 20_000,
};

export async function startServer(cfg: ServerConfig, log: Logger): Promise<RunningServer> {
  mkdirSync(cfg.data_dir, { recursive: true });
  const db = openServerDb(cfg.data_dir);
  const store = new AlertStore(db);
  const agents = new AgentRegistry(db);
  const tokens = new FeedTokens(db);
  const streams = new StreamRegistry();
  const pollers = new ProjectPollers(cfg.config_poll_interval, moduleLogger('config', log));
  let ready = false;

  const grpcServer = new grpc.Server(GRPC_OPTIONS);
  addTunnelServices(grpcServer, {
    agents,
    pollers,
    log: moduleLogger('tunnel', log),
    sink: { accept: async (agent, events) => store.ingest(agent, events) },
  }, streams);
  const g = splitHostPort(cfg.grpc_addr);
  const grpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync(`${g.host.includes(':') ? `[${g.host}]` : g.host}:${g.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(new Error(`cannot listen for agents on ${cfg.grpc_addr}: ${err.message}; pick a free address with --grpc-addr`)) : resolve(port)));
  });

  let http: FastifyInstance;
  try {
    http = await buildHttpServer({ store, tokens, log: moduleLogger('feed', log), ready: () => ready });
    const h = splitHostPort(cfg.http_addr);
    await http.listen({ host: h.host, port: h.port });
  } catch (e) {
    grpcServer.forceShutdown();
    db.close();
    throw new Error(`cannot listen for HTTP on ${cfg.http_addr}: ${(e as Error).message}; pick a free address with --http-addr`);
  }
  const httpAddr = http.server.address();
  const httpAddress = typeof httpAddr === 'object' && httpAddr ? `${cfg.http_addr.replace(/:\d+$/, '')}:${httpAddr.port}` : cfg.http_addr;
  const grpcAddress = `${cfg.grpc_addr.replace(/:\d+$/, '')}:${grpcPort}`;
  ready = true;
  log.info({ http_addr: httpAddress, grpc_addr: grpcAddress, data_dir: cfg.data_dir, version: VERSION }, 'Verdict server started');

  return {
    httpAddress,
    grpcAddress,
    db,
    store,
    agents,
    tokens,
    streams,
    async close() {
      ready = false;
      await http.close();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          grpcServer.forceShutdown();
          resolve();
        }, 2000);
        grpcServer.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      db.close();
    },
  };
}
