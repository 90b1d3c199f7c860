import websocket from '@fastify/websocket';
import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { createWebSocketStream, WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { RateLimiter, UPGRADE_LIMIT } from './rate-limit.js';
import { AGENT_WS_PATH, AGENT_WS_SUBPROTOCOL } from '../../shared/agent-api.js';

// The WebSocket transport of the agent API (ws:// and wss:// in --kas-address),
// as the original served it: the same gRPC services, their HTTP/2 bytes carried
// in binary WebSocket messages on the HTTP listener, so agents behind proxies
// that only pass HTTP/1.1 can connect. TLS, when configured, is the HTTP
// listener's, so each stream is injected into the gRPC server as plaintext.

// Far above a socket read's worth of bytes per message; the gRPC layer enforces its own 10 MiB.
const MAX_WS_MESSAGE = 16 * 1024 * 1024;

const wsConnections = new Gauge({ name: 'verdict_server_agent_websockets', help: 'Open agent WebSocket tunnels', registers: [registry] });
const wsRefused = new Counter({
  name: 'verdict_server_agent_websocket_refused_total',
  help: 'Agent WebSocket upgrades refused',
  labelNames: ['reason'],
  registers: [registry],
});

export interface AgentWebSocketOptions {
  grpcServer: grpc.Server;
  log: Logger;
  /** Upgrades per client address; default rate-limit.ts UPGRADE_LIMIT. */
  limiter?: RateLimiter;
}

export interface AgentWebSocket {
  /** Ends every tunnelled gRPC connection. */
  close(): void;
}

function offersSubprotocol(req: FastifyRequest): boolean {
  const h = req.headers['sec-websocket-protocol'];
  return typeof h === 'string' && h.split(',').some((p) => p.trim() === AGENT_WS_SUBPROTOCOL);
}

function isUpgrade(req: FastifyRequest): boolean {
  return String(req.headers.upgrade ?? '').toLowerCase() === 'websocket';
}

/** Adds the agent WebSocket endpoint to the HTTP server; call before it listens. */
export async function registerAgentWebSocket(app: FastifyInstance, opts: AgentWebSocketOptions): Promise<AgentWebSocket> {
  const injector = opts.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const limiter = opts.limiter ?? new RateLimiter(UPGRADE_LIMIT);
  const log = opts.log;
  // Our own WebSocket server: other WebSocket routes of the HTTP server (the
  // feed's live stream) negotiate their own subprotocol and message size, and
  // @fastify/websocket has one set of options per server.
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_WS_MESSAGE,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(AGENT_WS_SUBPROTOCOL) ? AGENT_WS_SUBPROTOCOL : false),
  });

  const onTunnel = (socket: WebSocket, req: FastifyRequest) => {
    const stream = createWebSocketStream(socket);
    // A peer vanishing mid-message is routine for a tunnel; the gRPC layer reports what it breaks.
    stream.on('error', (e) => log.debug({ peer: req.ip, error: e.message }, 'Agent WebSocket failed'));
    wsConnections.inc();
    stream.once('close', () => wsConnections.dec());
    log.debug({ peer: req.ip }, 'Agent connected over WebSocket');
    injector.injectConnection(stream);
  };

  // Runs before any handler, so the upgrade is ours whichever WebSocket plugin routed it here.
  const upgrade = async (req: FastifyRequest, reply: FastifyReply) => {
    if (!isUpgrade(req)) return;
    if (!offersSubprotocol(req)) {
      wsRefused.inc({ reason: 'subprotocol' });
      return reply.code(400).send({
        error: 'bad_request',
        message: `the agent WebSocket needs the "${AGENT_WS_SUBPROTOCOL}" subprotocol; connect with \`verdict agent --kas-address ws://host:port${AGENT_WS_PATH}\``,
      });
    }
    if (!limiter.take(req.ip)) {
      wsRefused.inc({ reason: 'rate_limited' });
      return reply
        .code(429)
        .header('retry-after', String(limiter.retryAfter(req.ip)))
        .send({ error: 'too_many_requests', message: `too many agent connections from ${req.ip} (limit: ${limiter.describe()}); retry later` });
    }
    reply.hijack();
    // A client sends no frame before the 101, so nothing was read past the headers.
    wss.handleUpgrade(req.raw, req.raw.socket, Buffer.alloc(0), (socket) => onTunnel(socket, req));
    return reply;
  };

  await app.register(async (scope) => {
    // Upgrades reach Fastify's routes through @fastify/websocket; add it unless the server has it.
    if (!scope.hasDecorator('websocketServer')) await scope.register(websocket);

    // Like the original: the path without its slash redirects, so a mistyped
    // --kas-address fails with a 301 the agent can explain, not a silent 404.
    scope.get(
      AGENT_WS_PATH.slice(0, -1),
      {
        onRequest: async (_req, reply) => {
          wsRefused.inc({ reason: 'no_trailing_slash' });
          return reply
            .code(301)
            .header('location', AGENT_WS_PATH)
            .send({ error: 'moved', message: `the agent endpoint is ${AGENT_WS_PATH} (with the trailing slash); end --kas-address with a slash` });
        },
      },
      async () => undefined,
    );

    scope.get(AGENT_WS_PATH, { onRequest: upgrade }, async (_req, reply) =>
      reply
        .code(426)
        .header('upgrade', 'websocket')
        .send({
          error: 'upgrade_required',
          message: `this is the agent's WebSocket endpoint; point an agent at it with --kas-address ws://host:port${AGENT_WS_PATH} (wss:// with TLS)`,
        }),
    );
  });

  return {
    close: () => {
      // 1001 Going Away tells agents the server is stopping, not failing (they log it at info); one that does not
      // answer the close frame at once is cut.
      for (const c of wss.clients) c.close(1001, 'the server is shutting down');
      setTimeout(() => {
        for (const c of wss.clients) c.terminate();
      }, 1000).unref();
      wss.close();
      injector.destroy();
    },
  };
}
