import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Severity } from '../../shared/alert/payload.js';
import type { AlertFilter, AlertStatus } from '../store/alert-query.js';
import { VerdictError } from '../../shared/errors.js';
import { DNS_LABEL, TIME_PATTERN } from './schemas.js';

// From query parameters to store filters, shared by the list, the counts and
// the live stream so the three always mean the same thing.

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

const TIME = new RegExp(TIME_PATTERN);

/**
 * RFC 3339 with its offset, a date, or a duration before `now` such as 15m,
 * 24h, 7d: what the schema's TIME_PATTERN admits, all of which Date.parse reads.
 */
export function parseTime(name: string, v: string, now: number): number {
  const rel = /^([0-9]{1,6})([smhdw])$/.exec(v);
  if (rel) return now - Number(rel[1]) * UNITS[rel[2]!]!;
  const t = TIME.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isFinite(t)) return t;
  throw new VerdictError(
    'VERDICT_BAD_REQUEST',
    `${name}: "${v}" is not a time; use RFC 3339 with its offset (2024-05-01T10:00:00Z), a date (2024-05-01) or a duration before now (15m, 24h, 7d)`,
  );
}

/** Values of a list parameter: each repeat may hold several, separated by commas. */
function split(values: string[] | undefined): string[] | undefined {
  return values
    ?.flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
}

const NAMESPACE_NAME = new RegExp(`^${DNS_LABEL}$`);

/**
 * Namespaces. An empty value is "no namespace", the key counts give those alerts.
 * A value without commas is one namespace, as stored, a DNS label or not (a Falco
 * event's is whatever its container runtime reported). A value with commas is a
 * list of namespace names (DNS labels), refused like the other filters when a part
 * is empty (`db,`: repeat `namespace=` for "db or none") or not a name, unless the
 * whole value is a namespace some alert holds (one index seek): then it is that one.
 */
function namespaces(values: string[] | undefined, holds: (ns: string) => boolean): string[] | undefined {
  return values?.flatMap((v) => {
    if (!v.includes(',')) return [v];
    const parts = v.split(',').map((p) => p.trim());
    if (parts.every((p) => NAMESPACE_NAME.test(p))) return parts;
    if (holds(v)) return [v];
    const bad = parts.find((p) => !NAMESPACE_NAME.test(p))!;
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      bad === ''
        ? `namespace: "${v}" has an empty part; for alerts with no namespace as well, repeat the parameter (namespace=db&namespace=)`
        : `namespace: "${bad}" in "${v}" is not a namespace name (lowercase letters, digits and '-'); separate only Kubernetes namespace names with commas, and send any other namespace alone in its own namespace= (no alert holds "${v}" as a whole)`,
    );
  });
}

/** What the filters ask the store: whether a namespace with commas is one some alert holds. */
export interface FilterLookups {
  holdsNamespace(ns: string): boolean;
}

/** The query-string form of AlertFilter: times as RFC 3339 or a relative "24h". */
export type FilterQuery = Omit<AlertFilter, 'since' | 'until'> & { since?: string; until?: string };

export function filterFrom(q: FilterQuery, store: FilterLookups, now = Date.now()): AlertFilter {
  // Split here, after validation: the schema (and so the OpenAPI document) checks
  // each value as sent, and a comma-separated one is a list by the document too.
  const f: AlertFilter = {
    status: split(q.status) as AlertStatus[] | undefined,
    severity: split(q.severity) as Severity[] | undefined,
    source: split(q.source) as AlertFilter['source'],
    agent: split(q.agent),
    namespace: namespaces(q.namespace, (ns) => store.holdsNamespace(ns)),
    policy: split(q.policy),
    rule: q.rule,
  };
  // since after until is an empty window, in which nothing matches (a relative
  // `since` and a fixed `until` come to that by themselves as time passes).
  if (q.since) f.since = parseTime('since', q.since, now);
  if (q.until) f.until = parseTime('until', q.until, now);
  if (q.q?.trim()) f.q = q.q;
  return f;
}

/**
 * preValidation hook for JSON bodies: fastify drops unknown fields silently,
 * which turns a misspelt field into a change the caller did not ask for.
 */
export function rejectUnknownFields(known: readonly string[]) {
  const allowed = new Set(known);
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const body = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return;
    const extra = Object.keys(body).find((k) => !allowed.has(k));
    if (extra !== undefined) return reply.code(400).send({ error: 'bad_request', message: `body: unknown field "${extra}"; known: ${known.join(', ')}` });
  };
}
