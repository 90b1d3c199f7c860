import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { AlertStore } from '../store/alert-store.js';
import { registerAlertRoutes } from './alerts-routes.js';
import { registerWebhookAdminRoutes } from '../webhooks/admin-routes.js';

export interface HttpDeps {
  store: AlertStore;
  tokens: FeedTokens;
  log: Logger;
  ready: () => boolean;
}

export async function buildHttpServer(deps: HttpDeps): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.log as FastifyBaseLogger, disableRequestLogging: true, bodyLimit: 1024 * 1024 }) as unknown as FastifyInstance;
  app.setErrorHandler((err: { statusCode?: number; validation?: unknown; message: string; code?: string }, req, reply) => {
    const status = err.statusCode ?? 500;
    if (status >= 500) req.log.error({ error: err.message }, 'Request failed');
    void reply.code(status).send({ error: err.validation ? 'bad_request' : (err.code ?? 'error'), message: err.message });
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => (deps.ready() ? { status: 'ready' } : reply.code(503).send({ status: 'starting' })));
  app.get('/metrics', async (_req, reply) => reply.header('content-type', registry.contentType).send(await registry.metrics()));
  registerAlertRoutes(app, deps);
  registerWebhookAdminRoutes(app, deps);
  return app;
}
