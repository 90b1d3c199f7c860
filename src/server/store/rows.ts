import type { PolicyRef } from '../../shared/alert/payload.js';
import type { AlertRow, StoredAlert } from './types.js';

// How alert rows are read: the columns each kind of read selects, and the
// conversion of a row to what callers get.

/** The narrow row: what queries filter and sort on. */
export const NARROW_COLS =
  'id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, last_received_at, clock_skew, severity_event, seq';
export const TEXT_COLS = 'title, description, policies, labels, details';
/** Both tables joined, as `a` and `t`. */
export const ROW_COLS = `${NARROW_COLS.split(', ')
  .map((c) => `a.${c}`)
  .join(', ')}, ${TEXT_COLS.split(', ')
  .map((c) => `t.${c}`)
  .join(', ')}`;
export const JOINED = 'alerts a JOIN alert_text t ON t.id = a.id';
/** Plus the search text the alert opened with (join SEARCH_JOIN), as the main full-text index has it; values added since are in alerts_fts_added. */
export const OPEN_COLS = `${ROW_COLS}, coalesce(s.search_text, '') AS search_text`;
export const SEARCH_JOIN = 'LEFT JOIN alert_search s ON s.id = a.id';

/** Formatted minutes ("…T10:42:"), by minute since the epoch. */
const isoMinutes = new Map<number, string>();

/**
 * new Date(ms).toISOString(), formatting only the seconds when the minute was
 * asked for lately: ingest formats an alert's changed times for every change
 * record, and they fall in a few minutes that alternate (each alert's last_seen,
 * the batch's time), so remembering a single minute would miss at nearly every call.
 */
export function iso(ms: number): string {
  if (!Number.isInteger(ms)) return new Date(ms).toISOString();
  const minute = Math.floor(ms / 60_000);
  let prefix = isoMinutes.get(minute);
  if (prefix === undefined) {
    if (isoMinutes.size >= 256) isoMinutes.clear();
    // "…T10:42:" and the rest, "SS.sssZ", is 7 characters for every year toISOString writes.
    prefix = new Date(minute * 60_000).toISOString().slice(0, -7);
    isoMinutes.set(minute, prefix);
  }
  const rest = ms - minute * 60_000;
  const sec = Math.floor(rest / 1000);
  const milli = rest - sec * 1000;
  return `${prefix}${sec < 10 ? '0' : ''}${sec}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** An alert as read from its row: JSON columns parsed, times formatted. */
export function rowToAlert(r: AlertRow, samples: unknown[] = []): StoredAlert {
  return alertOf(r, {
    policies: JSON.parse(r.policies) as PolicyRef[],
    labels: JSON.parse(r.labels) as Record<string, string>,
    details: JSON.parse(r.details) as Record<string, unknown>,
    samples,
    first_seen: iso(r.first_seen),
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
    last_received_at: iso(r.last_received_at),
  });
}

/**
 * What alertOf takes besides the row, named as the alert's fields: four of them
 * are ISO times, which positional arguments would let a caller swap unseen.
 */
export type ParsedFields = Pick<StoredAlert, 'policies' | 'labels' | 'details' | 'samples' | 'first_seen' | 'created_at' | 'updated_at' | 'last_received_at'>;

/**
 * The alert a row stands for, its JSON columns and the times that seldom change given already parsed and
 * formatted: ingest keeps them so for open alerts, where parsing and formatting them for every change would show.
 */
export function alertOf(r: AlertRow, c: ParsedFields): StoredAlert {
  const a: StoredAlert = {
    id: r.id,
    fingerprint: r.fingerprint,
    agent: r.agent,
    status: r.status,
    source: r.source,
    severity: r.severity,
    title: r.title,
    description: r.description,
    cluster: r.cluster,
    namespace: r.namespace,
    policies: c.policies,
    rule: r.rule,
    labels: c.labels,
    details: c.details,
    samples: c.samples,
    count: r.count,
    events: r.events,
    first_seen: c.first_seen,
    last_seen: iso(r.last_seen),
    created_at: c.created_at,
    updated_at: c.updated_at,
    last_received_at: c.last_received_at,
    seq: r.seq,
  };
  if (r.clock_skew) a.clock_skew = true;
  return a;
}
