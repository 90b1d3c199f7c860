import type { FastifyInstance } from 'fastify';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { AlertStore, StoredAlert } from '../store/alert-store.js';
import { requireScope } from './auth.js';

/** The public JSON shape of an alert in the feed. */
export function alertView(a: StoredAlert) {
  return {
    id: a.id,
    status: a.status,
    source: a.source,
    severity: a.severity,
    title: a.title,
    description: a.description,
    agent: a.agent,
    cluster: a.cluster,
    namespace: a.namespace,
    policies: a.policies,
    rule: a.rule,
    labels: a.labels,
    count: a.count,
    first_seen: a.first_seen,
    last_seen: a.last_seen,
    fingerprint: a.fingerprint,
    details: a.details,
  };
}

export function registerAlertRoutes(app: FastifyInstance, deps: { store: AlertStore; tokens: FeedTokens }): void {
  app.get('/api/v1/alerts', {
    preHandler: requireScope(deps.tokens, 'read'),
    schema: {
      querystring: {
        type: 'object',
        properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } },
        additionalProperties: true,
      },
    },
  }, async (req) => {
    const { limit } = req.query as { limit: number };
    return { alerts: deps.store.list({ limit }).map(alertView) };
  });

  app.get('/api/v1/alerts/:id', {
    preHandler: requireScope(deps.tokens, 'read'),
    schema: { params: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'] } },
  }, async (req, reply) => {
    const a = deps.store.get((req.params as { id: number }).id);
    if (!a) return reply.code(404).send({ error: 'not_found', message: 'no alert with this id' });
    return { alert: { ...alertView(a), samples: a.samples } };
  });
}
