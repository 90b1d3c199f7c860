import type { FastifyInstance } from 'fastify';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { CountBy, SortKey, SortOrder } from '../store/alert-query.js';
import type { AlertStatus, AlertStore, StoredAlert } from '../store/alert-store.js';
import { actorOf, scoped } from './auth.js';
import { filterFrom, rejectUnknownFields, type FilterQuery } from './filters.js';
import { countsQuerySchema, countsResponse, detailResponse, errors, idParams, listQuerySchema, listResponse, patchBody, routeSchema } from './schemas.js';

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
    events: a.events,
    first_seen: a.first_seen,
    last_seen: a.last_seen,
    created_at: a.created_at,
    updated_at: a.updated_at,
    last_received_at: a.last_received_at,
    ...(a.clock_skew ? { clock_skew: true } : {}),
    fingerprint: a.fingerprint,
    seq: a.seq,
    details: a.details,
  };
}

export type StatusChanger = (id: number, to: AlertStatus, actor: string) => Promise<StoredAlert | undefined>;

export function registerAlertRoutes(app: FastifyInstance, deps: { store: AlertStore; tokens: FeedTokens; changeStatus?: StatusChanger | undefined }): void {
  // Replicas on a shared Kafka log change status through the log; a single server, in its store.
  const changeStatus: StatusChanger = deps.changeStatus ?? (async (id, to, actor) => deps.store.setStatus(id, to, actor));
  const read = scoped(deps.tokens, 'read');
  const write = scoped(deps.tokens, 'write');

  app.get(
    '/api/v1/alerts',
    {
      ...read,
      schema: routeSchema({
        summary: 'List alerts',
        description: 'A page of alerts matching the filters, in the chosen order. Follow next_cursor for the next page.',
        querystring: listQuerySchema,
        response: { 200: listResponse, ...errors(400, 401, 403) },
      }),
    },
    async (req) => {
      const q = req.query as FilterQuery & { sort: SortKey; order: SortOrder; limit: number; cursor?: string };
      // Read before the list: a stream opened with it misses nothing that changes after.
      const streamCursor = deps.store.currentSeq();
      const page = deps.store.list({ ...filterFrom(q, deps.store), sort: q.sort, order: q.order, limit: q.limit, cursor: q.cursor });
      return { alerts: page.alerts.map(alertView), next_cursor: page.next_cursor, stream_cursor: streamCursor };
    },
  );

  app.get(
    '/api/v1/alerts/counts',
    {
      ...read,
      schema: routeSchema({
        summary: 'Count alerts by a dimension',
        description:
          'Alerts and occurrences per severity, source, rule, namespace, policy, status or agent, most first. With no filter but status it is answered from counters kept at ingest, at any store size.',
        querystring: countsQuerySchema,
        response: { 200: countsResponse, ...errors(400, 401, 403) },
      }),
    },
    async (req) => {
      const q = req.query as FilterQuery & { by: CountBy; limit: number };
      return { by: q.by, counts: deps.store.counts(q.by, filterFrom(q, deps.store), q.limit) };
    },
  );

  app.get(
    '/api/v1/alerts/:id',
    {
      ...read,
      schema: routeSchema({
        summary: 'One alert with its latest occurrences and status history',
        params: idParams,
        response: { 200: detailResponse, ...errors(400, 401, 403, 404) },
      }),
    },
    async (req, reply) => {
      const d = deps.store.detail((req.params as { id: number }).id);
      if (!d) return reply.code(404).send({ error: 'not_found', message: 'no alert with this id; it may have been purged by retention' });
      return {
        alert: { ...alertView(d.alert), samples: d.alert.samples },
        occurrences: d.occurrences,
        severity_occurrence: d.severity_occurrence,
        history: d.history,
      };
    },
  );

  app.patch(
    '/api/v1/alerts/:id',
    {
      ...write,
      preValidation: rejectUnknownFields(Object.keys(patchBody.properties)),
      schema: routeSchema({
        summary: 'Change the status of an alert',
        description:
          "Any status may move to any other; the change is recorded with the token's name and the time. Reopening a resolved alert fails with 409 while another alert with the same fingerprint is open. On Kafka replicas, 503 when Kafka cannot take the change now (nothing changed; try again).",
        params: idParams,
        body: patchBody,
        response: { 200: { type: 'object', properties: { alert: detailResponse.properties.alert } }, ...errors(400, 401, 403, 404, 409, 503) },
      }),
    },
    async (req, reply) => {
      const { id } = req.params as { id: number };
      const { status } = req.body as { status: AlertStatus };
      const a = await changeStatus(id, status, actorOf(req));
      if (!a) return reply.code(404).send({ error: 'not_found', message: 'no alert with this id; it may have been purged by retention' });
      return { alert: { ...alertView(a), samples: a.samples } };
    },
  );
}
