import type { FastifyInstance, FastifyReply } from 'fastify';
import { ConfigError, type ConfigIssue } from '../../shared/config/schema.js';
import { integrationToJson, parseIntegrationJson, type IntegrationSpec } from '../../shared/config/webhooks-config.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import { scoped } from '../feed/auth.js';
import { adminResponses, routeSchema } from '../feed/schemas.js';
import type { AlertStore } from '../store/alert-store.js';
import type { Integration } from './integrations.js';
import type { Delivery, DeliveryState } from './outbox.js';
import { webhooksFor, type WebhooksService } from './service.js';
import { VerdictError } from '../../shared/errors.js';

// /api/v1/admin/integrations: integrations and their deliveries, for feed
// tokens with scope "admin". Config-file integrations are listed but changed
// only in the file; enabling after a 410 and redelivering work for both kinds.

const BASE = '/api/v1/admin/integrations';

/** Shows enough of a literal secret to tell two apart, never the secret. */
function redactSecret(s: string): string {
  return s.startsWith('env:') || s.startsWith('file:') ? s : `${s.slice(0, s.startsWith('whsec_') ? 6 : 0)}…${s.slice(-4)}`;
}

/** A Slack webhook URL is itself the secret; an env:/file: reference is shown as written. */
function redactUrl(spec: IntegrationSpec): string {
  if (spec.type !== 'slack' || spec.url.startsWith('env:') || spec.url.startsWith('file:')) return spec.url;
  const u = new URL(spec.url);
  return `${u.origin}/…`;
}

/** Header values may be API keys of the receiver: shown as this, which PATCH reads as "unchanged". */
const HIDDEN = '…';

function integrationView(i: Integration, counts: Record<DeliveryState, number> | undefined) {
  const spec = integrationToJson(i.spec);
  spec.url = redactUrl(i.spec);
  spec.secrets = i.spec.secrets.map(redactSecret);
  if (i.spec.key !== undefined) spec.key = redactSecret(i.spec.key);
  spec.headers = Object.fromEntries(Object.keys(i.spec.headers).map((k) => [k, HIDDEN]));
  return {
    ...spec,
    origin: i.origin,
    read_only: i.origin === 'config',
    state: i.disabled_reason ? 'disabled' : i.spec.enabled ? 'active' : 'paused',
    disabled_reason: i.disabled_reason,
    disabled_at: i.disabled_at,
    created_at: i.created_at,
    updated_at: i.updated_at,
    deliveries: counts ?? { pending: 0, delivered: 0, dead: 0 },
  };
}

function deliveryView(d: Delivery) {
  return {
    id: d.id,
    webhook_id: d.webhook_id,
    event: d.event,
    state: d.state,
    alert_ids: d.alert_ids,
    attempts: d.attempts,
    next_attempt_at: d.state === 'pending' ? new Date(Math.max(d.next_attempt_at, d.lease_until ?? 0)).toISOString() : null,
    last_status: d.last_status,
    last_error: d.last_error,
    created_at: d.created_at,
    updated_at: d.updated_at,
    finished_at: d.finished_at,
  };
}

/** Integration and delivery views are documented in docs/webhooks.md; 503 when delivery is not running. */
const ok = (code: 200 | 201 | 202, ...errs: number[]) => adminResponses(code, 503, ...errs);

// An integration's name as the config takes it (webhooks-config.ts NAME_RE), so a name no integration can have is a 400.
const NAME = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$' } as const;
const nameParams = { type: 'object', properties: { name: NAME }, required: ['name'] };
const deliveryParams = { type: 'object', properties: { name: NAME, id: { type: 'integer', minimum: 1 } }, required: ['name', 'id'] };
/**
 * An integration as in the server config file. Its rules (per type, across
 * fields, the SSRF guard on the URL) are checked by the config's own validator
 * and explained field by field (`issues`); the schema says only that it is an object.
 */
const integrationBody = {
  type: 'object',
  description:
    'an integration as in the server config file: name, type, url, secrets, key, route, ... (docs/webhooks.md); url, secrets and key are the values themselves, not env: or file: references',
} as const;

function invalid(reply: FastifyReply, issues: ConfigIssue[], message: string) {
  return reply.code(400).send({ error: 'invalid_integration', message, issues: issues.map((i) => ({ path: i.path, message: i.message })) });
}

export function registerWebhookAdminRoutes(app: FastifyInstance, deps: { store: AlertStore; tokens: FeedTokens }): void {
  const admin = scoped(deps.tokens, 'admin');

  const service = (reply: FastifyReply): WebhooksService | undefined => {
    const s = webhooksFor(deps.store);
    if (!s) void reply.code(503).send({ error: 'unavailable', message: 'webhook delivery is not running in this server' });
    return s;
  };

  const fail = (reply: FastifyReply, e: unknown) => {
    if (e instanceof ConfigError) return invalid(reply, e.issues, e.message);
    throw e;
  };

  /** Parses and checks a spec, including that its URL may be reached. */
  const validate = async (s: WebhooksService, body: unknown, reply: FastifyReply): Promise<IntegrationSpec | undefined> => {
    let spec: IntegrationSpec;
    try {
      spec = parseIntegrationJson(body);
    } catch (e) {
      void fail(reply, e);
      return undefined;
    }
    // The body's URL is the URL itself: the API takes no env:/file: references.
    const refused = await s.policy.checkUrl(new URL(spec.url));
    if (refused) {
      void invalid(reply, [{ file: 'request body', line: 0, path: 'url', message: refused }], `request body: url: ${refused}`);
      return undefined;
    }
    return spec;
  };

  const find = (s: WebhooksService, name: string, reply: FastifyReply): Integration | undefined => {
    const i = s.registry.byName(name);
    if (!i) void reply.code(404).send({ error: 'not_found', message: `no integration named "${name}"; GET ${BASE} lists them` });
    return i;
  };

  app.get(
    BASE,
    {
      ...admin,
      schema: routeSchema({ summary: 'List webhook integrations', description: 'Secrets, keys and header values are redacted.', response: ok(200) }),
    },
    async (_req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const counts = s.outbox.counts();
      return { integrations: s.registry.all().map((i) => integrationView(i, counts.get(i.id))) };
    },
  );

  app.post(
    BASE,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Create a webhook integration',
        description:
          'The body is an integration as in the server config file (docs/webhooks.md), with url, secrets and key as the values themselves: env: and file: references are for the config file only. Its URL must pass the SSRF guard.',
        body: integrationBody,
        response: ok(201, 400, 409),
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const spec = await validate(s, req.body, reply);
      if (!spec) return reply;
      try {
        const i = await s.registry.createApi(spec);
        return reply.code(201).send({ integration: integrationView(i, undefined) });
      } catch (e) {
        return fail(reply, e);
      }
    },
  );

  app.get(
    `${BASE}/:name`,
    {
      ...admin,
      schema: routeSchema({ summary: 'Get a webhook integration', params: nameParams, response: ok(200, 400, 404) }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const i = find(s, (req.params as { name: string }).name, reply);
      if (!i) return reply;
      return { integration: integrationView(i, s.outbox.counts().get(i.id)) };
    },
  );

  // Top-level keys in the body replace the integration's; keys left out stay.
  // Redacted secrets as GET shows them stand for the secrets they hide.
  app.patch(
    `${BASE}/:name`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Change a webhook integration',
        description:
          "Top-level keys in the body replace the integration's; redacted values as GET shows them stand for the values they hide. Integrations from the config file are changed in the file.",
        params: nameParams,
        body: { type: 'object', description: 'the top-level keys of an integration to change' },
        response: ok(200, 400, 404, 409),
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const i = find(s, (req.params as { name: string }).name, reply);
      if (!i) return reply;
      if (i.origin === 'config')
        throw new VerdictError('VERDICT_CONFLICT', `integration "${i.name}" is defined in the server config file; change it there and restart the server`);
      const body = req.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        return invalid(reply, [], 'send a JSON object with the keys to change, e.g. {"route": {"min_severity": "high"}}');
      const patch = { ...(body as Record<string, unknown>) };
      if (Array.isArray(patch.secrets)) patch.secrets = patch.secrets.map((x) => i.spec.secrets.find((sec) => redactSecret(sec) === x && sec !== x) ?? x);
      if (typeof patch.key === 'string' && i.spec.key !== undefined && patch.key === redactSecret(i.spec.key)) patch.key = i.spec.key;
      if (patch.url === redactUrl(i.spec)) patch.url = i.spec.url;
      if (typeof patch.headers === 'object' && patch.headers !== null) {
        patch.headers = Object.fromEntries(Object.entries(patch.headers).map(([k, v]) => [k, v === HIDDEN && k in i.spec.headers ? i.spec.headers[k] : v]));
      }
      const spec = await validate(s, { ...integrationToJson(i.spec), ...patch }, reply);
      if (!spec) return reply;
      try {
        return { integration: integrationView(await s.registry.updateApi(i.name, spec), s.outbox.counts().get(i.id)) };
      } catch (e) {
        return fail(reply, e);
      }
    },
  );

  app.delete(
    `${BASE}/:name`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Delete a webhook integration',
        description: 'Its pending deliveries are dropped.',
        params: nameParams,
        response: ok(200, 400, 404, 409),
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      try {
        const pending = await s.registry.deleteApi((req.params as { name: string }).name);
        return { deleted: true, pending_deliveries_dropped: pending };
      } catch (e) {
        return fail(reply, e);
      }
    },
  );

  app.post(
    `${BASE}/:name/enable`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Enable a webhook integration again',
        description: 'After a receiver answered 410 Gone.',
        params: nameParams,
        response: ok(200, 400, 404),
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      try {
        const i = await s.registry.enableApi((req.params as { name: string }).name);
        s.outbox.wake();
        return { integration: integrationView(i, s.outbox.counts().get(i.id)) };
      } catch (e) {
        return fail(reply, e);
      }
    },
  );

  app.get(
    `${BASE}/:name/deliveries`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'List deliveries of an integration, newest first',
        response: ok(200, 400, 404),
        params: nameParams,
        querystring: {
          type: 'object',
          properties: {
            state: { type: 'string', enum: ['pending', 'delivered', 'dead'] },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
            before: { type: 'integer', minimum: 1 },
          },
          additionalProperties: false,
        },
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const i = find(s, (req.params as { name: string }).name, reply);
      if (!i) return reply;
      const q = req.query as { state?: DeliveryState; limit: number; before?: number };
      const list = s.outbox.list({ integrationId: i.id, limit: q.limit, ...(q.state ? { state: q.state } : {}), ...(q.before ? { beforeId: q.before } : {}) });
      return { deliveries: list.map(deliveryView), next_before: list.length === q.limit ? list[list.length - 1]!.id : null };
    },
  );

  const delivery = (s: WebhooksService, params: { name: string; id: number }, reply: FastifyReply): Delivery | undefined => {
    const i = find(s, params.name, reply);
    if (!i) return undefined;
    const d = s.outbox.get(params.id);
    if (!d || d.integration_id !== i.id) {
      void reply
        .code(404)
        .send({ error: 'not_found', message: `integration "${i.name}" has no delivery ${params.id}; GET ${BASE}/${i.name}/deliveries lists them` });
      return undefined;
    }
    return d;
  };

  app.get(
    `${BASE}/:name/deliveries/:id`,
    {
      ...admin,
      schema: routeSchema({ summary: 'Get a delivery with its body and attempts', params: deliveryParams, response: ok(200, 400, 404) }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const d = delivery(s, req.params as { name: string; id: number }, reply);
      if (!d) return reply;
      return { delivery: { ...deliveryView(d), body: JSON.parse(d.body) as unknown, attempt_log: s.outbox.attempts(d.id) } };
    },
  );

  app.post(
    `${BASE}/:name/deliveries/:id/redeliver`,
    {
      ...admin,
      schema: routeSchema({
        summary: 'Redeliver a delivered or dead delivery',
        description: 'With the same webhook-id.',
        params: deliveryParams,
        response: ok(202, 400, 404, 409),
      }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const d = delivery(s, req.params as { name: string; id: number }, reply);
      if (!d) return reply;
      if (!s.outbox.redeliver(d.id))
        return reply.code(409).send({
          error: 'conflict',
          message: `delivery ${d.id} is still pending (try ${d.attempts + 1} is scheduled); it cannot be redelivered until it is delivered or dead`,
        });
      const i = s.registry.byId(d.integration_id)!;
      const note = i.disabled_reason
        ? `; the integration is disabled (${i.disabled_reason}), so it waits until POST ${BASE}/${i.name}/enable`
        : i.spec.enabled
          ? ''
          : '; the integration is paused (enabled: false)';
      return reply.code(202).send({ delivery: deliveryView(s.outbox.get(d.id)!), message: `queued again with the same webhook-id${note}` });
    },
  );

  app.post(
    `${BASE}/:name/dead-letters/redeliver`,
    {
      ...admin,
      schema: routeSchema({ summary: 'Redeliver every dead delivery of an integration', params: nameParams, response: ok(202, 400, 404) }),
    },
    async (req, reply) => {
      const s = service(reply);
      if (!s) return reply;
      const i = find(s, (req.params as { name: string }).name, reply);
      if (!i) return reply;
      return reply.code(202).send({ redelivered: s.outbox.redeliverDead(i.id) });
    },
  );
}
