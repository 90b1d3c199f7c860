import type { FastifySchema } from 'fastify';
import { ALERT_SOURCES, SEVERITIES } from '../../shared/alert/payload.js';
import { FEED_SCOPES } from '../auth/feed-tokens.js';
import { COUNT_BY, SORTS, STATUSES } from '../store/alert-query.js';

// JSON schemas of the feed API. Fastify validates requests with them and
// serializes responses with them, and /api/v1/openapi.json is built from them.

const NAME = { type: 'string', minLength: 1, maxLength: 253 } as const;

/**
 * What `since` and `until` take, exactly what filters.ts parseTime reads: a
 * duration before now, a date (midnight UTC), or an RFC 3339 date-time with its
 * offset (a time without one would be the server's local time, a guess).
 * [0-9], not \d: generators that read patterns as Python does take \d for any
 * Unicode digit, which JavaScript's \d is not.
 */
export const TIME_PATTERN =
  '^(?:[0-9]{1,6}[smhdw]|[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,9})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))?)$';
/**
 * The annotation keyword that says, in words, what a value must be where a
 * pattern checks it: the pattern itself says little to a person. A value that
 * fails the pattern is answered `<parameter>: "<value>" is not <these words>`
 * (http-errors.ts), and the OpenAPI document carries the words beside the pattern.
 */
export const EXPECTED = 'x-expected';

const TIME = {
  type: 'string',
  pattern: TIME_PATTERN,
  description: 'RFC 3339 time with its offset (2024-05-01T10:00:00Z), a date (2024-05-01, midnight UTC) or a duration before now (15m, 24h, 7d; s, m, h, d, w)',
  [EXPECTED]: 'a time: RFC 3339 with its offset (2024-05-01T10:00:00Z), a date (2024-05-01) or a duration before now (15m, 24h, 7d)',
} as const;

// Kubernetes names: agents and namespaces are DNS labels, policies DNS subdomains
// (RFC 1123). Patterns keep every filter a URL can carry within the server's
// header limit (http-server.ts), where free text in every value would not be.
export const DNS_LABEL = '[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?';
const DNS_SUBDOMAIN = '[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?';
/** One or more names, comma-separated (the list is split after validation); `expected` names one of them in words. */
const nameList = (one: string, expected: string) => ({ type: 'string', pattern: `^${one}(?:,${one})*$`, [EXPECTED]: expected }) as const;

/** A comma-separated list of enum values, as the list parameters take them besides repeating. */
const enumList = (values: readonly string[]) => {
  const one = `(?:${values.join('|')})`;
  return { type: 'string', pattern: `^${one}(?:,${one})*$`, [EXPECTED]: `one of ${values.join(', ')}` } as const;
};

/** Filters shared by the list, the counts and the live stream. */
export const filterProperties = {
  status: { type: 'array', items: enumList(STATUSES), maxItems: 4, description: 'any of these statuses; repeat the parameter or separate with commas' },
  severity: { type: 'array', items: enumList(SEVERITIES), maxItems: 5, description: 'any of these severities; repeat the parameter or separate with commas' },
  source: { type: 'array', items: enumList([...ALERT_SOURCES]), maxItems: ALERT_SOURCES.length, description: 'repeat the parameter or separate with commas' },
  agent: {
    type: 'array',
    items: nameList(DNS_LABEL, "an agent name (lowercase letters, digits and '-', e.g. edge-1)"),
    maxItems: 20,
    description: 'agent names; repeat the parameter or separate with commas',
  },
  // Any text an alert can hold, not only DNS labels: a Falco event's k8s.ns.name is whatever its container
  // runtime reported, and a namespace the facet shows must be one the filter takes. Empty: no namespace.
  // Five values (each may list namespace names, comma-separated) keep the longest query within the header limit.
  // A value with commas is checked after validation (filters.ts): whether it is one namespace depends on the store.
  namespace: {
    type: 'array',
    items: { type: 'string', maxLength: 253 },
    maxItems: 5,
    description:
      'namespaces as alerts hold them; an empty value (namespace=) means alerts with no namespace (host events, cluster-scoped ones), as counts by namespace name them (key ""); repeat the parameter (up to 5 times) or separate Kubernetes namespace names with commas. A value with commas must be a list of namespace names with no empty part (400 otherwise), unless an alert holds that whole value as its namespace',
  },
  policy: {
    type: 'array',
    items: nameList(
      `(?:${DNS_LABEL}/)?${DNS_SUBDOMAIN}`,
      "a policy: namespace/name or a bare name (lowercase letters, digits, '-' and '.', e.g. shop/allow-dns or allow-dns)",
    ),
    maxItems: 20,
    description: '"namespace/name", or a bare name for any namespace; repeat the parameter or separate with commas',
  },
  rule: { type: 'array', items: NAME, maxItems: 20, description: 'Falco rule names; repeat the parameter for several (rule names may contain commas)' },
  since: { ...TIME, description: `alerts last seen at or after this time: ${TIME.description}` },
  until: { ...TIME, description: `alerts last seen at or before this time: ${TIME.description}` },
  q: {
    type: 'string',
    maxLength: 200,
    description:
      'full-text search over titles, Falco outputs, descriptions, pods, namespaces, policy and rule names; words are ANDed, "quoted words" are a phrase, a word ending in * is a prefix; hyphens and dots are part of words; a word with no letter or digit (an emoji, *, --) is looked for as written',
  },
  access_token: { type: 'string', description: 'the feed token, for clients that cannot send an Authorization header' },
} as const;

/**
 * The query string of a route that takes no parameters: any is refused (validators.ts),
 * ?access_token= aside.
 */
export const noQuerySchema = { type: 'object', additionalProperties: false, properties: {} } as const;

// additionalProperties: false: unknown parameters are refused (validators.ts).
export const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...filterProperties,
    sort: {
      type: 'string',
      enum: SORTS,
      default: 'last_seen',
      description: 'last_seen (latest activity), created (newest alert), severity (then newest), count (occurrences)',
    },
    order: { type: 'string', enum: ['desc', 'asc'], default: 'desc' },
    limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
    cursor: {
      type: 'string',
      maxLength: 300,
      pattern: '^[A-Za-z0-9_-]*$',
      [EXPECTED]: 'a cursor this server made; pass next_cursor of the previous page unchanged, or drop it to start over',
      description: 'next_cursor of the previous page, unchanged (the same sort and order); empty: the first page',
    },
  },
} as const;

export const countsQuerySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['by'],
  properties: {
    ...filterProperties,
    by: { type: 'string', enum: COUNT_BY },
    limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 },
  },
} as const;

export const streamQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...filterProperties,
    cursor: {
      type: 'integer',
      minimum: 0,
      description: 'resume after this change (the `cursor` of the last message received, or `stream_cursor` of a list response)',
    },
  },
} as const;

const policyRef = {
  type: 'object',
  properties: { kind: { type: 'string' }, namespace: { type: 'string' }, name: { type: 'string' } },
  required: ['kind', 'namespace', 'name'],
} as const;

export const freeObject = { type: 'object', additionalProperties: true } as const;
const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

export const alertSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    status: { type: 'string', enum: STATUSES },
    source: { type: 'string', enum: [...ALERT_SOURCES] },
    severity: { type: 'string', enum: SEVERITIES },
    title: { type: 'string' },
    description: { type: 'string', description: 'of the first occurrence; each occurrence keeps its own' },
    agent: { type: 'string' },
    cluster: { type: 'string' },
    namespace: { type: 'string' },
    policies: { type: 'array', items: policyRef },
    rule: { type: 'string' },
    labels: { ...stringMap, description: 'of the first occurrence; each occurrence keeps its own' },
    count: { type: 'integer', description: 'occurrences' },
    events: { type: 'integer', description: 'events received (an agent may fold several occurrences into one)' },
    first_seen: { type: 'string', format: 'date-time' },
    last_seen: { type: 'string', format: 'date-time' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
    last_received_at: {
      type: 'string',
      format: 'date-time',
      description: "when the server received the latest event, to the minute; retention ages alerts by it (first_seen and last_seen are the events' own times)",
    },
    clock_skew: {
      type: 'boolean',
      description: 'present (true) when an occurrence was stamped more than 5 minutes after the server received it: a fast clock; its times are shown as given',
    },
    fingerprint: { type: 'string' },
    seq: { type: 'integer', description: 'change counter: a higher seq is a later change' },
    details: {
      ...freeObject,
      description:
        'cilium (flow endpoints, drop reason, and the refused L7 request: http, dns with query and rcode, kafka; see alerts/alert.schema.json) or falco (rule, priority, output, output fields) of the first occurrence',
    },
  },
  required: ['id', 'status', 'source', 'severity', 'title', 'namespace', 'policies', 'rule', 'count', 'first_seen', 'last_seen', 'seq'],
} as const;

export const errorSchema = {
  type: 'object',
  properties: {
    error: { type: 'string' },
    message: { type: 'string' },
    issues: {
      type: 'array',
      description: 'what was wrong, field by field, where a body was checked',
      items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } },
    },
  },
  required: ['error', 'message'],
} as const;

export const errors = (...codes: number[]) => Object.fromEntries(codes.map((c) => [c, errorSchema]));

/**
 * Responses of an admin route whose answer is documented in prose (docs/) and
 * left open in the schema, with the errors it can give besides 401 and 403.
 */
export const adminResponses = (code: 200 | 201 | 202, ...errs: number[]) => ({ [code]: freeObject, ...errors(401, 403, ...errs) });

export const listResponse = {
  type: 'object',
  properties: {
    alerts: { type: 'array', items: alertSchema },
    next_cursor: { type: ['string', 'null'], description: 'pass as cursor for the next page; null on the last page' },
    stream_cursor: { type: 'integer', description: 'open the live stream with this cursor to get every change after this page was read' },
  },
  required: ['alerts', 'next_cursor', 'stream_cursor'],
} as const;

export const occurrenceSchema = {
  type: 'object',
  properties: {
    event_no: { type: 'integer' },
    event_id: { type: 'string' },
    received_at: { type: 'string', format: 'date-time' },
    count: { type: 'integer' },
    first_seen: { type: 'string', format: 'date-time' },
    last_seen: { type: 'string', format: 'date-time' },
    severity: { type: 'string' },
    description: { type: 'string' },
    labels: stringMap,
    samples: { type: 'array', items: {}, description: 'raw flows (Hubble JSON) or Falco events' },
  },
} as const;

export const historySchema = {
  type: 'object',
  properties: {
    from: { type: 'string', enum: STATUSES },
    to: { type: 'string', enum: STATUSES },
    actor: { type: 'string' },
    at: { type: 'string', format: 'date-time' },
  },
} as const;

export const detailResponse = {
  type: 'object',
  properties: {
    alert: {
      ...alertSchema,
      properties: { ...alertSchema.properties, samples: { type: 'array', items: {}, description: 'the latest raw samples, oldest first' } },
    },
    occurrences: { type: 'array', items: occurrenceSchema, description: 'the latest occurrences, newest first' },
    severity_occurrence: {
      ...occurrenceSchema,
      description:
        "the occurrence that set the alert's severity (the highest of its occurrences while it is open), kept after newer ones pushed it out of the latest",
    },
    history: { type: 'array', items: historySchema, description: 'status changes, oldest first' },
  },
} as const;

export const idParams = {
  type: 'object',
  properties: { id: { type: 'integer', minimum: 1 } },
  required: ['id'],
} as const;

export const patchBody = {
  type: 'object',
  properties: { status: { type: 'string', enum: STATUSES } },
  required: ['status'],
  additionalProperties: false,
} as const;

export const countsResponse = {
  type: 'object',
  properties: {
    by: { type: 'string' },
    counts: {
      type: 'array',
      items: { type: 'object', properties: { key: { type: 'string' }, alerts: { type: 'integer' }, events: { type: 'integer' } } },
    },
  },
} as const;

export const tokenInfoSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    scope: { type: 'string', enum: FEED_SCOPES },
    created_at: { type: 'string' },
    revoked_at: { type: ['string', 'null'] },
  },
} as const;

/**
 * A route schema with OpenAPI extras (summary, description, hide). Typed loosely
 * on purpose: fastify would otherwise narrow reply.code() to the documented codes.
 * An API route that declares no query string takes none (noQuerySchema), so that
 * ?limit=1 on a list without paging is refused rather than answered with every
 * row. Hidden routes (the web page, probes, metrics) keep ignoring parameters:
 * a browser's or a scraper's URL may carry any.
 */
export function routeSchema(s: { summary?: string; description?: string; hide?: boolean } & FastifySchema): FastifySchema {
  if (s.hide) return s;
  // Every API route checks its query string, so every one can answer 400: the document says so.
  const response = s.response && typeof s.response === 'object' && !('400' in s.response) ? { ...s.response, ...errors(400) } : s.response;
  return { ...s, querystring: s.querystring ?? noQuerySchema, ...(response ? { response } : {}) };
}
