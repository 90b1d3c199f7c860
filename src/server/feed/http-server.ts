import websocket from '@fastify/websocket';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../../shared/log/logger.js';
import type { TlsMaterial } from '../tunnel/tls.js';
import { registry } from '../../shared/metrics/registry.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { AlertStore } from '../store/alert-store.js';
import { registerFeedTokenAdminRoutes } from './admin-routes.js';
import { registerAlertRoutes, type StatusChanger } from './alerts-routes.js';
import { STREAM_PROTOCOL } from './auth.js';
import { registerMethodNotAllowed } from './method-not-allowed.js';
import { validatorCompiler } from './validators.js';
import { registerOpenApi } from './openapi.js';
import { StreamHub } from './stream.js';
import { registerStreamRoute } from './stream-routes.js';
import { registerWebRoutes } from './web-routes.js';
import { routeSchema } from './schemas.js';
import { registerWebhookAdminRoutes } from '../webhooks/admin-routes.js';
import { clientErrorHandler, describeValidation, httpErrorHandler } from './http-errors.js';
import { registerJsonBodies } from './json-body.js';

export interface HttpDeps {
  store: AlertStore;
  tokens: FeedTokens;
  log: Logger;
  ready: () => boolean;
  /** Why the server should get no traffic yet although it runs (a Kafka replica rebuilding its store); undefined when nothing holds it back. */
  notReady?: (() => { status: string; reason: string } | undefined) | undefined;
  /** How often live streams are pinged and their tokens checked (tests shorten it). */
  streamPingMs?: number;
  /** Changes an alert's status; default: in the store (a Kafka replica passes its changeStatus). */
  changeStatus?: StatusChanger | undefined;
  /** Serve HTTPS (and wss:// for WebSockets) with this certificate and key; plain HTTP without. */
  tls?: TlsMaterial | undefined;
}

/**
 * Request line and headers. Node's default (16 KiB) is less than the filters the
 * OpenAPI document allows (20 Falco rule names of 253 characters, percent-encoded,
 * are 60 KiB; 5 namespaces of 253, 15 KiB; every filter at its longest about 90 KiB): every request the document
 * calls valid must fit. Below 128 KiB: curl over TLS sends the first 128 KiB of a
 * longer head and waits for an answer, which a larger limit would never give (the
 * request would time out instead of being refused).
 */
const MAX_HEADER_SIZE = 96 * 1024;

export async function buildHttpServer(deps: HttpDeps): Promise<FastifyInstance & { streams: StreamHub }> {
  const app = Fastify({
    // Node's https server: TLS ends there and upgrades (the live stream, the agent
    // tunnel) arrive decrypted, as on plain HTTP. HTTP/1.1 only, so a gRPC client
    // pointed here is refused in the handshake rather than half-served.
    ...(deps.tls ? { https: { cert: deps.tls.cert, key: deps.tls.key, ALPNProtocols: ['http/1.1'], maxHeaderSize: MAX_HEADER_SIZE } } : {}),
    loggerInstance: deps.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 1024 * 1024,
    // Fastify answers 414 for a longer path parameter; Node refuses request headers
    // over MAX_HEADER_SIZE (431) first, so no parameter reaches this and a too-long
    // name is refused by its schema (400), as the OpenAPI document says.
    routerOptions: { maxParamLength: MAX_HEADER_SIZE },
    http: { maxHeaderSize: MAX_HEADER_SIZE },
    schemaErrorFormatter: (errors, dataVar) => new Error(describeValidation(errors, dataVar === 'querystring' ? 'query' : dataVar)),
    // Refusals before routing (a path that is not valid percent-encoding) and of what is not HTTP: the same answers.
    frameworkErrors: httpErrorHandler,
    clientErrorHandler: clientErrorHandler(MAX_HEADER_SIZE),
  }) as unknown as FastifyInstance;
  app.setErrorHandler(httpErrorHandler);
  registerJsonBodies(app);
  app.addHook('onSend', async (_req, reply) => {
    if (!reply.hasHeader('x-content-type-options')) void reply.header('x-content-type-options', 'nosniff');
  });
  await app.register(websocket, {
    options: {
      maxPayload: 64 * 1024,
      // Never echo the bearer.<token> protocol back. An upgrade that offers others but not verdict.v1 is refused before it (stream-routes.ts); ws asks nothing of one that offers none.
      handleProtocols: (protocols: Set<string>) => (protocols.has(STREAM_PROTOCOL) ? STREAM_PROTOCOL : false),
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  registerMethodNotAllowed(app, { maxParamLength: MAX_HEADER_SIZE });
  await registerOpenApi(app);
  const hub = new StreamHub(deps.store, deps.tokens, deps.log, { pingMs: deps.streamPingMs });
  app.addHook('onClose', async () => hub.close());
  app.get('/healthz', { schema: routeSchema({ hide: true, response: { 200: { type: 'object', properties: { status: { type: 'string' } } } } }) }, async () => ({
    status: 'ok',
  }));
  app.get(
    '/readyz',
    {
      schema: routeSchema({
        hide: true,
        response: {
          200: { type: 'object', properties: { status: { type: 'string' } } },
          503: { type: 'object', properties: { status: { type: 'string' }, reason: { type: 'string' }, behind: { type: 'integer' } } },
        },
      }),
    },
    async (_req, reply) => {
      if (!deps.ready()) return reply.code(503).send({ status: 'starting', reason: 'the server is starting or shutting down' });
      const why = deps.notReady?.();
      return why ? reply.code(503).send(why) : { status: 'ready' };
    },
  );
  app.get('/metrics', { schema: routeSchema({ hide: true }) }, async (_req, reply) =>
    reply.header('content-type', registry.contentType).send(await registry.metrics()),
  );
  registerAlertRoutes(app, deps);
  registerStreamRoute(app, { ...deps, hub });
  registerFeedTokenAdminRoutes(app, deps);
  registerWebhookAdminRoutes(app, deps);
  registerWebRoutes(app);
  return Object.assign(app, { streams: hub });
}
