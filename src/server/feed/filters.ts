import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Severity } from '../../shared/alert/payload.js';
import { QueryError, type AlertFilter, type AlertStatus } from '../store/alert-query.js';
import { LIST_PARAMS } from './schemas.js';

// From query parameters to store filters, shared by the list, the counts and
// the live stream so the three always mean the same thing.

const UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** RFC 3339, or a duration before `now` such as 15m, 24h, 7d. */
export function parseTime(name: string, v: string, now: number): number {
  const rel = /^(\d{1,6})(s|m|h|d|w)$/.exec(v.trim());
  if (rel) return now - Number(rel[1]) * UNITS[rel[2]!]!;
  if (/^\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?)?$/.test(v.trim())) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new QueryError(`${name}: "${v}" is not a time; use RFC 3339 (2024-05-01T10:00:00Z) or a duration before now (15m, 24h, 7d)`);
}

/** The query-string form of AlertFilter: times as RFC 3339 or a relative "24h". */
export type FilterQuery = Omit<AlertFilter, 'since' | 'until'> & { since?: string; until?: string };

export function filterFrom(q: FilterQuery, now = Date.now()): AlertFilter {
  const f: AlertFilter = {
    status: q.status, severity: q.severity, source: q.source, agent: q.agent,
    namespace: q.namespace, policy: q.policy, rule: q.rule,
  };
  if (q.since) f.since = parseTime('since', q.since, now);
  if (q.until) f.until = parseTime('until', q.until, now);
  if (f.since !== undefined && f.until !== undefined && f.since > f.until) throw new QueryError('since is after until; swap them');
  if (q.q?.trim()) f.q = q.q;
  return f;
}

/**
 * preValidation hook: splits comma-separated list parameters (status=a,b) and
 * rejects parameters the route does not know, since a misspelt filter that is
 * silently ignored shows alerts the caller meant to exclude.
 */
export function normalizeQuery(known: readonly string[]) {
  const allowed = new Set(known);
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const q = req.query as Record<string, unknown>;
    for (const k of Object.keys(q)) {
      if (!allowed.has(k)) {
        return reply.code(400).send({ error: 'bad_request', message: `unknown query parameter "${k}"; known: ${known.filter((x) => x !== 'access_token').join(', ')}` });
      }
      if (LIST_PARAMS.has(k)) {
        const v = q[k];
        const parts = (Array.isArray(v) ? v : [v]).flatMap((x) => String(x).split(',')).map((x) => x.trim()).filter((x) => x !== '');
        q[k] = parts;
      }
    }
  };
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
