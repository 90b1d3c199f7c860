import type { Statement } from 'better-sqlite3';
import { EventEmitter } from 'node:events';
import { MAX_SAMPLES, SEVERITY_RANK, type AlertPayload, type PolicyRef, type Severity } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import { cutText } from '../../shared/text/cut.js';
import {
  changesSql, countsSql, cursorFromKey, cursorOf, drivers, listSql, QueryError, SCAN_FN, sizeSql, STATUSES, visitedMinIdSql,
  type AlertFilter, type AlertStatus, type CountBy, type Driver, type ListQuery,
} from './alert-query.js';

export { STATUSES, type AlertStatus } from './alert-query.js';

// Stores alert events from agents. An alert groups occurrences by agent and
// fingerprint: a repeat of an open alert (triggered, acknowledged or ignored)
// increments its count; a repeat of a resolved one opens a new alert. Event ids
// make a re-sent batch idempotent. Every insert and update takes the next `seq`,
// the change counter live streams resume from.

export interface StoredAlert {
  id: number;
  fingerprint: string;
  agent: string;
  status: AlertStatus;
  source: string;
  severity: string;
  title: string;
  description: string;
  cluster: string;
  namespace: string;
  policies: PolicyRef[];
  rule: string;
  labels: Record<string, string>;
  details: Record<string, unknown>;
  /**
   * Raw flows or events behind the alert, newest last, at most MAX_SAMPLES. From
   * get(): the alert's latest samples; in `changed` after an ingest: the samples
   * that came with that change.
   */
  samples: unknown[];
  /** Occurrences, as counted by the agents (one event may fold several). */
  count: number;
  /** Events received for this alert. */
  events: number;
  first_seen: string;
  last_seen: string;
  created_at: string;
  updated_at: string;
  seq: number;
}

export interface Occurrence {
  event_no: number;
  event_id: string;
  received_at: string;
  count: number;
  first_seen: string;
  last_seen: string;
  severity: string;
  description: string;
  labels: Record<string, string>;
  samples: unknown[];
}

export interface StatusChange {
  from: AlertStatus;
  to: AlertStatus;
  actor: string;
  at: string;
}

export interface IncomingEvent {
  id: string;
  payload: AlertPayload;
}

export interface IngestResult {
  stored: number;
  duplicates: number;
  alerts: StoredAlert[];
}

/** How many of the latest events (with their samples) each alert keeps. */
export const OCCURRENCES_KEPT = 20;
/** A sample bigger than this is kept as a truncated preview. */
export const MAX_SAMPLE_BYTES = 16 * 1024;
const MAX_TITLE = 200;
const MAX_DESCRIPTION = 4000;

/** A status change that would make two open alerts for one fingerprint. */
export class StatusConflictError extends Error {
  readonly statusCode = 409;
  readonly code = 'conflict';
  constructor(readonly openId: number) {
    super(`alert ${openId} is already open for the same agent and fingerprint; change that one, or resolve it first`);
  }
}

export interface AlertRow {
  id: number;
  fingerprint: string;
  agent: string;
  status: AlertStatus;
  source: string;
  severity: string;
  severity_rank: number;
  title: string;
  description: string;
  cluster: string;
  namespace: string;
  policies: string;
  rule: string;
  labels: string;
  details: string;
  search_text?: string;
  count: number;
  events: number;
  first_seen: number;
  last_seen: number;
  created_at: number;
  updated_at: number;
  seq: number;
}

/** The narrow row: what queries filter and sort on. */
const NARROW_COLS = 'id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule, count, events, first_seen, last_seen, created_at, updated_at, seq';
const TEXT_COLS = 'title, description, policies, labels, details';
/** Both tables joined, as `a` and `t`. */
const ROW_COLS = `${NARROW_COLS.split(', ').map((c) => `a.${c}`).join(', ')}, ${TEXT_COLS.split(', ').map((c) => `t.${c}`).join(', ')}`;
const JOINED = 'alerts a JOIN alert_text t ON t.id = a.id';
/** Plus what ingest needs to continue an alert's searchable text. */
const OPEN_COLS = `${ROW_COLS}, t.search_text`;

type NarrowRow = Omit<AlertRow, 'title' | 'description' | 'policies' | 'labels' | 'details' | 'search_text'>;
type TextRow = Pick<AlertRow, 'id' | 'title' | 'description' | 'policies' | 'labels' | 'details'>;

/** Thrown by the scan function when a list query has examined its budget of rows. */
class ScanBudgetSpent extends Error {}

const iso = (ms: number) => new Date(ms).toISOString();

export function rowToAlert(r: AlertRow, samples: unknown[] = []): StoredAlert {
  return {
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
    policies: JSON.parse(r.policies) as PolicyRef[],
    rule: r.rule,
    labels: JSON.parse(r.labels) as Record<string, string>,
    details: JSON.parse(r.details) as Record<string, unknown>,
    samples,
    count: r.count,
    events: r.events,
    first_seen: iso(r.first_seen),
    last_seen: iso(r.last_seen),
    created_at: iso(r.created_at),
    updated_at: iso(r.updated_at),
    seq: r.seq,
  };
}

function entryToAlert(e: OpenEntry, updatedAt: string): StoredAlert {
  const r = e.row;
  // Date formatting is a visible cost at 50,000 alerts/s: only changed times are formatted again.
  if (e.iso.first[0] !== r.first_seen) e.iso.first = [r.first_seen, iso(r.first_seen)];
  if (e.iso.last[0] !== r.last_seen) e.iso.last = [r.last_seen, iso(r.last_seen)];
  return {
    id: r.id, fingerprint: r.fingerprint, agent: r.agent, status: r.status, source: r.source, severity: r.severity,
    title: r.title, description: r.description, cluster: r.cluster, namespace: r.namespace,
    // Shared with the cache, which replaces rather than mutates them.
    policies: e.policies, rule: r.rule, labels: e.labels, details: e.details, samples: e.batchSamples,
    count: r.count, events: r.events, first_seen: e.iso.first[1], last_seen: e.iso.last[1],
    created_at: e.iso.created, updated_at: updatedAt, seq: r.seq,
  };
}

interface PendingOccurrence {
  no: number;
  id: string;
  count: number;
  first: number;
  last: number;
  severity: string;
  description: string;
  labels: Record<string, string>;
  samples: readonly unknown[];
}

/** An open alert as ingest keeps it in memory between batches. */
interface OpenEntry {
  row: AlertRow;
  labels: Record<string, string>;
  policies: PolicyRef[];
  details: Record<string, unknown>;
  /** Label values already in search_text. */
  searchValues: Set<string>;
  searchText: string;
  /** search_text as the full-text index has it. */
  indexedSearchText: string;
  searchChanged: boolean;
  severityChanged?: boolean;
  isNew: boolean;
  batchSamples: unknown[];
  /** This batch's newest occurrences, not written yet. */
  pending: PendingOccurrence[];
  /** Its rollup rows (dimension, value, status), while severity and status stay. */
  rollupKeys: string[];
  iso: { first: [number, string]; last: [number, string]; created: string };
}

function timeMs(s: string, fallback: number): number {
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : fallback;
}

/** Label values kept searchable per alert; a flood of distinct values stops adding after these. */
const MAX_SEARCH_VALUES = 64;
const MAX_SEARCH_TEXT = 4096;

function policiesText(policies: readonly PolicyRef[]): string {
  return policies.map((p) => `${p.namespace}/${p.name} ${p.kind}`).join(' ');
}

/** search_text: namespace, policies, rule, then one label value a line. */
function searchTextOf(namespace: string, policies: readonly PolicyRef[], rule: string): string {
  return `${namespace}\n${policiesText(policies)}\n${rule}`;
}
const SEARCH_HEADER_LINES = 3;

/** Adds label values not seen on this alert yet; true when search_text changed. */
function addSearchValues(e: OpenEntry, labels: Record<string, string>): boolean {
  let added = false;
  for (const v of Object.values(labels)) {
    if (v === '' || e.searchValues.has(v) || e.searchValues.size >= MAX_SEARCH_VALUES || e.searchText.length + v.length > MAX_SEARCH_TEXT) continue;
    e.searchValues.add(v);
    e.searchText += `\n${v}`;
    added = true;
  }
  return added;
}

/** Labels are small searchable strings; anything else an agent sends is dropped, not stored. */
function cleanLabels(l: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(l)) {
    // Newlines separate values in search_text.
    if (typeof v === 'string') out[k] = cutText(v, 512).replace(/[\r\n]+/g, ' ');
    else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v);
  }
  return out;
}

function capSample(s: unknown): { value: unknown; json: string } {
  const json = JSON.stringify(s) ?? 'null';
  if (json.length <= MAX_SAMPLE_BYTES) return { value: s, json };
  const value = { truncated: true, bytes: json.length, preview: json.slice(0, 2048) };
  return { value, json: JSON.stringify(value) };
}

export interface ListResult {
  alerts: StoredAlert[];
  next_cursor: string | null;
}

export interface CountRow {
  key: string;
  alerts: number;
  events: number;
}

export interface PurgeLimits {
  /** Alerts not seen for this long are deleted with their occurrences and history. */
  maxAgeMs: number;
  /** At most this many alerts; the least recently seen go first. */
  maxRows: number;
  /** Event ids are kept this long to recognise a re-sent batch. */
  eventIdMaxAgeMs: number;
  /** At most this many event ids, but never trimming ids younger than eventIdMinAgeMs. */
  maxEventIds: number;
  /** A batch may come again this long after it was stored (the agent's reconnect backoff, then its spool drain). */
  eventIdMinAgeMs?: number;
}

export interface PurgeResult {
  alerts: number;
  eventIds: number;
  /** True when a limit still needs more work (the caller runs another step soon). */
  more: boolean;
}

/**
 * A filter matching at most this many alerts drives the query: its ids are
 * fetched and sorted (about 1.2 µs an alert, so 5 ms at most). Above it, walking the sort index finds
 * a page of matches quickly because they are dense.
 */
export const DRIVER_MAX = 4000;
/**
 * Rows a list query may examine while walking the sort index (about 1 µs a row). A page
 * whose filters match few of many alerts comes back short, with a cursor that
 * continues the walk, rather than holding the store for a full-table scan.
 */
export const SCAN_BUDGET = 8_000;
const CACHE_MAX = 20_000;

type RollupFields = Pick<AlertRow, 'severity' | 'source' | 'namespace' | 'rule' | 'agent' | 'status' | 'count'>;

function rollupKeys(r: RollupFields, policies: readonly PolicyRef[]): string[] {
  const k = (dim: string, key: string) => `${dim}\u0000${key}\u0000${r.status}`;
  const keys = [k('severity', r.severity), k('source', r.source), k('namespace', r.namespace), k('agent', r.agent)];
  if (r.rule) keys.push(k('rule', r.rule));
  for (const p of policies) keys.push(k('policy', p.namespace ? `${p.namespace}/${p.name}` : p.name));
  return keys;
}

class RollupDelta {
  private readonly d = new Map<string, [number, number]>();

  addKeys(keys: readonly string[], alerts: number, events: number): void {
    for (const k of keys) {
      const v = this.d.get(k);
      if (v) {
        v[0] += alerts;
        v[1] += events;
      } else {
        this.d.set(k, [alerts, events]);
      }
    }
  }

  add(sign: 1 | -1, r: RollupFields, policies: readonly PolicyRef[]): void {
    this.addKeys(rollupKeys(r, policies), sign, sign * r.count);
  }

  write(st: Statement<unknown[]>): void {
    for (const [k, [alerts, events]] of this.d) {
      if (alerts === 0 && events === 0) continue;
      const [dim, key, status] = k.split('\u0000');
      st.run(dim, key, status, alerts, events);
    }
    this.d.clear();
  }
}

/**
 * Below this many alerts the store keeps no planner statistics. Statistics taken
 * of a near-empty store say every table holds a row or two, and SQLite then
 * scans tables that have since grown rather than use their indexes: a replica
 * whose first `PRAGMA optimize` ran at start-up spent 13 ms on every alert
 * lookup. Without statistics SQLite assumes large tables and uses the indexes.
 */
export const PLANNER_STATS_MIN_ALERTS = 10_000;

function dropStatsOfASmallStore(db: DB): void {
  if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").get()) return;
  const row = db.prepare("SELECT stat FROM sqlite_stat1 WHERE idx = 'alerts_seq'").get() as { stat: string } | undefined;
  if (row && Number.parseInt(row.stat, 10) >= PLANNER_STATS_MIN_ALERTS) return;
  db.exec('DELETE FROM sqlite_stat1');
  // Makes SQLite reload the (now empty) statistics.
  db.exec('ANALYZE sqlite_schema');
}

export class AlertStore extends EventEmitter<{ changed: [StoredAlert[]] }> {
  private readonly s;
  private seq: number;
  private lastId: number;
  /** Open alerts by agent + fingerprint, least recently used first. */
  private readonly open = new Map<string, OpenEntry>();
  private readonly txHooks: ((changed: StoredAlert[]) => void)[] = [];
  private readonly stmtCache = new Map<string, Statement<unknown[]>>();
  /** State of the list scan in progress (list queries run one at a time: the store is synchronous). */
  private scan: { n: number; budget: number; last: (number | string)[] | undefined } = { n: 0, budget: SCAN_BUDGET, last: undefined };

  private readonly scanBudget: number;

  constructor(private readonly db: DB, opts: { scanBudget?: number } = {}) {
    super();
    this.scanBudget = opts.scanBudget ?? SCAN_BUDGET;
    dropStatsOfASmallStore(db);
    this.s = {
      findOpen: db.prepare(`SELECT ${OPEN_COLS} FROM ${JOINED} WHERE a.agent = ? AND a.fingerprint = ? AND a.status != 'resolved'`),
      getById: db.prepare(`SELECT ${ROW_COLS} FROM ${JOINED} WHERE a.id = ?`),
      insertAlert: db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule,
        count, events, first_seen, last_seen, created_at, updated_at, seq) VALUES (?, ?, ?, 'triggered', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      insertText: db.prepare('INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      // Separate statements, so that an index or the full-text row is touched only when its column changed.
      updateAlert: db.prepare('UPDATE alerts SET count = ?, events = ?, first_seen = ?, last_seen = ?, updated_at = ?, seq = ? WHERE id = ?'),
      updateSeverity: db.prepare('UPDATE alerts SET severity = ?, severity_rank = ? WHERE id = ?'),
      updateSearch: db.prepare('UPDATE alert_text SET search_text = ? WHERE id = ?'),
      textOf: db.prepare<unknown[]>(`SELECT id, ${TEXT_COLS} FROM alert_text WHERE id IN (SELECT value FROM json_each(?))`),
      insertFts: db.prepare<unknown[]>('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (?, ?, ?, ?)'),
      // The index has no copy of the text: removing a row takes the text it was indexed with.
      deleteFts: db.prepare<unknown[]>("INSERT INTO alerts_fts (alerts_fts, rowid, title, description, search_text) VALUES ('delete', ?, ?, ?, ?)"),
      insertPolicy: db.prepare('INSERT OR IGNORE INTO alert_policies (alert_id, kind, namespace, name) VALUES (?, ?, ?, ?)'),
      insertEvent: db.prepare('INSERT OR IGNORE INTO alert_events (event_id, alert_id, received_at) VALUES (?, ?, ?)'),
      putOccurrence: db.prepare(`INSERT OR REPLACE INTO alert_occurrences (alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      // Named indexes: a lookup by alert must never become a scan, whatever the statistics say.
      samplesOf: db.prepare(`SELECT samples FROM alert_occurrences INDEXED BY alert_occurrences_slot WHERE alert_id = ? ORDER BY event_no DESC LIMIT ${MAX_SAMPLES}`),
      occurrencesOf: db.prepare('SELECT event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples FROM alert_occurrences INDEXED BY alert_occurrences_slot WHERE alert_id = ? ORDER BY event_no DESC LIMIT ?'),
      historyOf: db.prepare('SELECT from_status, to_status, actor, at FROM alert_status_changes WHERE alert_id = ? ORDER BY id'),
      setStatus: db.prepare('UPDATE alerts SET status = ?, updated_at = ?, seq = ? WHERE id = ?'),
      addHistory: db.prepare('INSERT INTO alert_status_changes (alert_id, from_status, to_status, actor, at) VALUES (?, ?, ?, ?, ?)'),
      rollup: db.prepare<unknown[]>(`INSERT INTO alert_rollup (dim, key, status, alerts, events) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (dim, key, status) DO UPDATE SET alerts = alerts + excluded.alerts, events = events + excluded.events`),
      rollupCounts: db.prepare(`SELECT key, sum(alerts) AS alerts, sum(events) AS events FROM alert_rollup WHERE dim = ? AND status IN (SELECT value FROM json_each(?))
        GROUP BY key HAVING sum(alerts) > 0 ORDER BY alerts DESC, key LIMIT ?`),
      rollupByStatus: db.prepare(`SELECT status AS key, sum(alerts) AS alerts, sum(events) AS events FROM alert_rollup WHERE dim = 'source' AND status IN (SELECT value FROM json_each(?))
        GROUP BY status HAVING sum(alerts) > 0 ORDER BY alerts DESC, key LIMIT ?`),
      rollupTidy: db.prepare('DELETE FROM alert_rollup WHERE alerts <= 0'),
      countAlerts: db.prepare("SELECT coalesce(sum(alerts), 0) AS n FROM alert_rollup WHERE dim = 'source'"),
      oldestAlerts: db.prepare(`SELECT ${OPEN_COLS} FROM alerts a INDEXED BY alerts_last_seen JOIN alert_text t ON t.id = a.id WHERE a.last_seen < ? ORDER BY a.last_seen, a.id LIMIT ?`),
      leastRecentAlerts: db.prepare(`SELECT ${OPEN_COLS} FROM alerts a INDEXED BY alerts_last_seen JOIN alert_text t ON t.id = a.id ORDER BY a.last_seen, a.id LIMIT ?`),
      deleteAlert: db.prepare('DELETE FROM alerts WHERE id = ?'),
      trimEventsByAge: db.prepare('DELETE FROM alert_events WHERE id IN (SELECT id FROM (SELECT id, received_at FROM alert_events ORDER BY id LIMIT ?) WHERE received_at < ?)'),
      eventIdRange: db.prepare('SELECT min(id) AS lo, max(id) AS hi FROM alert_events'),
      trimEventsBelow: db.prepare('DELETE FROM alert_events WHERE id < ? AND id < ? AND received_at < ?'),
    };
    db.function(SCAN_FN, { varargs: true, deterministic: false }, (...key: unknown[]) => {
      const scan = this.scan;
      if (scan.n >= scan.budget) throw new ScanBudgetSpent();
      scan.n++;
      scan.last = key as (number | string)[];
      return 1;
    });
    this.seq = (db.prepare('SELECT coalesce(max(seq), 0) AS s FROM alerts').get() as { s: number }).s;
    // Ids are assigned here so an event id can be claimed before its alert row
    // exists; AUTOINCREMENT's counter keeps ids of purged alerts from coming back.
    const seqRow = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'").get() as { seq: number } | undefined;
    const maxRow = db.prepare('SELECT coalesce(max(id), 0) AS m FROM alerts').get() as { m: number };
    this.lastId = Math.max(seqRow?.seq ?? 0, maxRow.m);
  }

  /** The change counter of the newest stored change. */
  currentSeq(): number {
    return this.seq;
  }

  private loadOpen(agent: string, fp: string, key: string): OpenEntry | undefined {
    const row = this.s.findOpen.get(agent, fp) as AlertRow | undefined;
    if (!row) return undefined;
    const labels = JSON.parse(row.labels) as Record<string, string>;
    const searchText = row.search_text ?? '';
    const e: OpenEntry = {
      row, labels, policies: JSON.parse(row.policies) as PolicyRef[], details: JSON.parse(row.details) as Record<string, unknown>,
      searchValues: new Set(searchText.split('\n').slice(SEARCH_HEADER_LINES)), searchText, indexedSearchText: searchText, searchChanged: false, isNew: false, batchSamples: [], pending: [],
      rollupKeys: [], iso: { first: [row.first_seen, iso(row.first_seen)], last: [row.last_seen, iso(row.last_seen)], created: iso(row.created_at) },
    };
    e.rollupKeys = rollupKeys(row, e.policies);
    delete row.search_text;
    this.open.set(key, e);
    return e;
  }

  /** Stores a batch in one transaction; the caller acknowledges after it returns. */
  ingest(agent: string, events: readonly IncomingEvent[]): IngestResult {
    const now = Date.now();
    const nowIso = iso(now);
    const touched = new Map<number, OpenEntry>();
    const keys: string[] = [];
    const seq0 = this.seq;
    const id0 = this.lastId;
    let stored = 0;
    let duplicates = 0;
    const s = this.s;
    const rollup = new RollupDelta();
    let changed: StoredAlert[] = [];
    try {
      this.db.transaction(() => {
        for (const ev of events) {
          const p = ev.payload;
          const key = `${agent}\u0000${p.fingerprint}`;
          let e = this.open.get(key);
          if (e) {
            // Most recently used last, so eviction takes the coldest.
            this.open.delete(key);
            this.open.set(key, e);
          } else {
            e = this.loadOpen(agent, p.fingerprint, key);
          }
          const alertId = e ? e.row.id : this.lastId + 1;
          // Claim the event id first: a re-sent batch must not count twice, and a
          // re-send of an event whose alert was resolved since must not reopen it.
          if (s.insertEvent.run(ev.id, alertId, now).changes === 0) {
            duplicates++;
            continue;
          }
          stored++;
          const first = timeMs(p.first_seen, now);
          const last = timeMs(p.last_seen, first);
          const severity: Severity = p.severity;
          const description = cutText(p.description, MAX_DESCRIPTION);
          const labels = cleanLabels(p.labels);
          if (!e) {
            this.lastId = alertId;
            const details = p.cilium ? { cilium: p.cilium } : p.falco ? { falco: p.falco } : {};
            e = {
              row: {
                id: alertId, fingerprint: p.fingerprint, agent, status: 'triggered', source: p.source, severity, severity_rank: SEVERITY_RANK[severity] ?? 0,
                title: cutText(p.title, MAX_TITLE), description, cluster: p.cluster, namespace: p.namespace,
                policies: JSON.stringify(p.policies), rule: p.rule, labels: JSON.stringify(labels), details: JSON.stringify(details),
                count: 0, events: 0, first_seen: first, last_seen: last, created_at: now, updated_at: now, seq: 0,
              },
              labels, policies: p.policies, details, searchValues: new Set(), searchText: searchTextOf(p.namespace, p.policies, p.rule),
              indexedSearchText: '', searchChanged: false, isNew: true, batchSamples: [], pending: [],
              rollupKeys: [], iso: { first: [first, iso(first)], last: [last, iso(last)], created: nowIso },
            };
            e.rollupKeys = rollupKeys(e.row, p.policies);
            rollup.addKeys(e.rollupKeys, 1, 0);
            addSearchValues(e, labels);
            this.open.set(key, e);
            for (const pr of p.policies) s.insertPolicy.run(alertId, pr.kind, pr.namespace, pr.name);
          } else {
            const r = e.row;
            // Title, description and labels stay those of the first occurrence (as in
            // GitLab), so a repeat rewrites only the narrow row; occurrences keep
            // each one's own. Severity follows the newest.
            if (last >= r.last_seen) {
              if (r.severity !== severity) {
                rollup.addKeys(e.rollupKeys, -1, -r.count);
                r.severity = severity;
                r.severity_rank = SEVERITY_RANK[severity] ?? 0;
                e.severityChanged = true;
                e.rollupKeys = rollupKeys(r, e.policies);
                rollup.addKeys(e.rollupKeys, 1, r.count);
              }
            }
            if (addSearchValues(e, labels)) e.searchChanged = true;
            if (first < r.first_seen) r.first_seen = first;
            if (last > r.last_seen) r.last_seen = last;
          }
          const r = e.row;
          r.count += p.count;
          rollup.addKeys(e.rollupKeys, 0, p.count);
          const eventNo = r.events++;
          r.updated_at = now;
          r.seq = ++this.seq;
          // Only the newest OCCURRENCES_KEPT of a batch can survive in the ring, so a
          // burst of one alert writes (and serialises) no more occurrences than that.
          if (e.pending.length === OCCURRENCES_KEPT) e.pending.shift();
          e.pending.push({ no: eventNo, id: ev.id, count: p.count, first, last, severity, description, labels, samples: p.samples });
          if (!touched.has(r.id)) {
            touched.set(r.id, e);
            keys.push(key);
          }
        }
        // One row write per alert per batch, however many of its events came.
        for (const e of touched.values()) {
          const r = e.row;
          for (const o of e.pending) {
            const samples = o.samples.slice(-MAX_SAMPLES).map(capSample);
            const labelsJson = JSON.stringify(o.labels);
            // The ring: slot = n mod size, so the oldest occurrence is overwritten in place.
            s.putOccurrence.run(r.id, o.no % OCCURRENCES_KEPT, o.no, o.id, now, o.count, o.first, o.last, o.severity,
              o.description === r.description ? null : o.description, labelsJson === r.labels ? null : labelsJson, `[${samples.map((x) => x.json).join(',')}]`);
            if (samples.length) e.batchSamples = e.batchSamples.concat(samples.map((x) => x.value)).slice(-MAX_SAMPLES);
          }
          e.pending = [];
          if (e.isNew) {
            s.insertAlert.run(r.id, r.fingerprint, r.agent, r.source, r.severity, r.severity_rank, r.cluster, r.namespace, r.rule,
              r.count, r.events, r.first_seen, r.last_seen, r.created_at, r.updated_at, r.seq);
            s.insertText.run(r.id, r.title, r.description, r.policies, r.labels, r.details, e.searchText);
            s.insertFts.run(r.id, r.title, r.description, e.searchText);
          } else {
            s.updateAlert.run(r.count, r.events, r.first_seen, r.last_seen, r.updated_at, r.seq, r.id);
            if (e.severityChanged) s.updateSeverity.run(r.severity, r.severity_rank, r.id);
            if (e.searchChanged) {
              s.updateSearch.run(e.searchText, r.id);
              s.deleteFts.run(r.id, r.title, r.description, e.indexedSearchText);
              s.insertFts.run(r.id, r.title, r.description, e.searchText);
            }
          }
          e.indexedSearchText = e.searchText;
        }
        rollup.write(s.rollup);
        changed = [...touched.values()].map((e) => entryToAlert(e, nowIso));
        // Hooks write in the same transaction (e.g. the webhook outbox), so a
        // stored alert and its follow-up work commit together or not at all.
        if (changed.length) for (const h of this.txHooks) h(changed);
      })();
    } catch (err) {
      // The rows were rolled back; the cache must not remember them either.
      this.seq = seq0;
      this.lastId = id0;
      for (const k of keys) this.open.delete(k);
      throw err;
    }
    for (const e of touched.values()) {
      e.isNew = false;
      e.searchChanged = false;
      e.severityChanged = false;
      e.batchSamples = [];
    }
    // One iterator for all evictions: a fresh keys() per eviction would walk
    // past every entry deleted before it (a Map keeps them until it rehashes).
    if (this.open.size > CACHE_MAX) {
      const coldest = this.open.keys();
      while (this.open.size > CACHE_MAX) this.open.delete(coldest.next().value!);
    }
    if (changed.length) this.emit('changed', changed);
    return { stored, duplicates, alerts: changed };
  }

  /**
   * Keeps the query planner's statistics current as the tables change shape,
   * once the store is big enough for them to describe it. True when it ran.
   */
  refreshPlannerStats(): boolean {
    if ((this.s.countAlerts.get() as { n: number }).n < PLANNER_STATS_MIN_ALERTS) return false;
    this.db.pragma('optimize');
    return true;
  }

  /** Registers work that must commit atomically with stored alerts. */
  onStoredInTransaction(hook: (changed: StoredAlert[]) => void): void {
    this.txHooks.push(hook);
  }

  private readonly statusHooks: ((alert: StoredAlert) => void)[] = [];

  /** Registers work that must commit atomically with a status change. */
  onStatusChangedInTransaction(hook: (alert: StoredAlert) => void): void {
    this.statusHooks.push(hook);
  }

  get(id: number): StoredAlert | undefined {
    const r = this.s.getById.get(id) as AlertRow | undefined;
    if (!r) return undefined;
    const samples = (this.s.samplesOf.all(id) as { samples: string }[]).reverse().flatMap((x) => JSON.parse(x.samples) as unknown[]).slice(-MAX_SAMPLES);
    return rowToAlert(r, samples);
  }

  /** An alert with its latest occurrences (newest first) and its status history (oldest first). */
  detail(id: number, occurrences = OCCURRENCES_KEPT): { alert: StoredAlert; occurrences: Occurrence[]; history: StatusChange[] } | undefined {
    const alert = this.get(id);
    if (!alert) return undefined;
    const occ = (this.s.occurrencesOf.all(id, occurrences) as (Omit<Occurrence, 'description' | 'labels' | 'samples' | 'received_at' | 'first_seen' | 'last_seen'> & { description: string | null; labels: string | null; samples: string; received_at: number; first_seen: number; last_seen: number })[]).map((o) => ({
      ...o, received_at: iso(o.received_at), first_seen: iso(o.first_seen), last_seen: iso(o.last_seen),
      description: o.description ?? alert.description,
      labels: o.labels === null ? alert.labels : JSON.parse(o.labels) as Record<string, string>,
      samples: JSON.parse(o.samples) as unknown[],
    }));
    const history = (this.s.historyOf.all(id) as { from_status: AlertStatus; to_status: AlertStatus; actor: string; at: number }[]).map((h) => ({
      from: h.from_status, to: h.to_status, actor: h.actor, at: iso(h.at),
    }));
    return { alert, occurrences: occ, history };
  }

  /**
   * Moves an alert to another status (any to any) and records who did it.
   * Returns undefined for an unknown id; throws StatusConflictError when
   * reopening would make a second open alert for the same fingerprint.
   */
  setStatus(id: number, to: AlertStatus, actor: string): StoredAlert | undefined {
    if (!STATUSES.includes(to)) throw new QueryError(`status must be one of ${STATUSES.join(', ')}`);
    let result: StoredAlert | undefined;
    let changed = false;
    const seq0 = this.seq;
    try {
      this.db.transaction(() => {
        const r = this.s.getById.get(id) as AlertRow | undefined;
        if (!r) return;
        if (r.status === to) {
          result = rowToAlert(r);
          return;
        }
        const key = `${r.agent}\u0000${r.fingerprint}`;
        if (r.status === 'resolved') {
          const other = this.s.findOpen.get(r.agent, r.fingerprint) as AlertRow | undefined;
          if (other) throw new StatusConflictError(other.id);
        }
        const now = Date.now();
        const seq = ++this.seq;
        this.s.setStatus.run(to, now, seq, id);
        this.s.addHistory.run(id, r.status, to, actor, now);
        const policies = JSON.parse(r.policies) as PolicyRef[];
        const rollup = new RollupDelta();
        rollup.add(-1, r, policies);
        rollup.add(1, { ...r, status: to }, policies);
        rollup.write(this.s.rollup);
        const cached = this.open.get(key);
        if (to === 'resolved') {
          if (cached?.row.id === id) this.open.delete(key);
        } else if (cached?.row.id === id) {
          cached.row.status = to;
          cached.row.updated_at = now;
          cached.row.seq = seq;
          cached.rollupKeys = rollupKeys(cached.row, cached.policies);
        }
        result = rowToAlert({ ...r, status: to, updated_at: now, seq });
        for (const h of this.statusHooks) h(result);
        changed = true;
      })();
    } catch (e) {
      this.seq = seq0;
      throw e;
    }
    if (changed && result) this.emit('changed', [result]);
    return result;
  }

  private prepared(sql: string): Statement<unknown[]> {
    let st = this.stmtCache.get(sql);
    if (!st) {
      st = this.db.prepare<unknown[]>(sql);
      if (this.stmtCache.size > 500) this.stmtCache.clear();
      this.stmtCache.set(sql, st);
    }
    return st;
  }

  /** The smallest filter's id set, if one matches at most DRIVER_MAX alerts. */
  private pickDriver(q: ListQuery): Driver | undefined {
    let best: { d: Driver; n: number } | undefined;
    for (const d of drivers(q)) {
      // Sorted by last_seen, the walk of that index covers exactly the time range,
      // in order, and stops after a page: faster than fetching and sorting the range.
      if (d.name === 'time' && (q.sort ?? 'last_seen') === 'last_seen') continue;
      const sz = sizeSql(d, DRIVER_MAX);
      const n = (this.prepared(sz.sql).get(...sz.params) as { n: number }).n;
      if (n <= DRIVER_MAX && (!best || n < best.n)) best = { d, n };
      if (n === 0) break;
    }
    return best?.d;
  }

  /** A page of alerts, newest activity first unless sorted otherwise. */
  list(q: ListQuery): ListResult {
    const driver = this.pickDriver(q);
    let ftsMinId: number | undefined;
    if (!driver && q.q) {
      const v = visitedMinIdSql(q, this.scanBudget);
      ftsMinId = (this.prepared(v.sql).get(...v.params) as { m: number | null }).m ?? undefined;
    }
    const { sql, params, scan } = listSql(NARROW_COLS, q, driver, ftsMinId);
    const sort = q.sort ?? 'last_seen';
    const order = q.order ?? 'desc';
    const rows: NarrowRow[] = [];
    let spent = false;
    this.scan = { n: 0, budget: this.scanBudget, last: undefined };
    try {
      for (const r of this.prepared(sql).iterate(...params)) rows.push(r as NarrowRow);
    } catch (e) {
      if (!(e instanceof ScanBudgetSpent)) throw e;
      spent = true;
    }
    let next: string | null = null;
    if (rows.length === q.limit) next = cursorOf(rows[rows.length - 1] as unknown as Record<string, unknown>, sort, order);
    // The walk stopped early: continue after the last row it examined (matching or not).
    else if (scan && spent && this.scan.last) next = cursorFromKey(this.scan.last, sort, order);
    return { alerts: this.withText(rows), next_cursor: next };
  }

  /** Narrow rows completed with their text (title, description...), in the same order. */
  private withText(rows: readonly NarrowRow[]): StoredAlert[] {
    if (!rows.length) return [];
    const text = new Map((this.s.textOf.all(JSON.stringify(rows.map((r) => r.id))) as TextRow[]).map((t) => [t.id, t]));
    const out: StoredAlert[] = [];
    for (const r of rows) {
      const t = text.get(r.id);
      if (t) out.push(rowToAlert({ ...r, ...t }));
    }
    return out;
  }

  /**
   * Alerts and their occurrences per value of a dimension. With no filter but
   * status, from the rollup (constant time); otherwise counted from the alerts.
   */
  counts(by: CountBy, f: AlertFilter, limit = 20): CountRow[] {
    const onlyStatus = Object.entries(f).every(([k, v]) => k === 'status' || v === undefined || (Array.isArray(v) && v.length === 0));
    if (onlyStatus) {
      const statuses = JSON.stringify(f.status?.length ? f.status : STATUSES);
      if (by === 'status') return this.s.rollupByStatus.all(statuses, limit) as CountRow[];
      return this.s.rollupCounts.all(by, statuses, limit) as CountRow[];
    }
    const { sql, params } = countsSql(by, f, limit);
    return this.prepared(sql).all(...params) as CountRow[];
  }

  /**
   * Alerts changed after `afterSeq` (oldest change first) that match the filters
   * that cannot change on an alert; the stream applies the rest itself.
   */
  changesSince(afterSeq: number, f: AlertFilter, limit: number): StoredAlert[] {
    const { sql, params } = changesSql(NARROW_COLS, f, afterSeq, limit);
    return this.withText(this.prepared(sql).all(...params) as NarrowRow[]);
  }

  /** Which of these alert ids match a full-text query (FTS5 syntax, from toFtsQuery). */
  matchingText(ids: readonly number[], fts: string): Set<number> {
    if (!ids.length) return new Set();
    const rows = this.prepared(`SELECT rowid AS id FROM alerts_fts WHERE alerts_fts MATCH ? AND rowid IN (${ids.map(() => '?').join(',')})`).all(fts, ...ids) as { id: number }[];
    return new Set(rows.map((r) => r.id));
  }

  /**
   * One bounded step of retention: deletes up to `budget` alerts past the limits,
   * and trims old event ids. Short transactions, so ingest waits at most a few ms.
   */
  purgeStep(limits: PurgeLimits, budget = 2000, now = Date.now()): PurgeResult {
    let alerts = 0;
    let eventIds = 0;
    let more = false;
    this.db.transaction(() => {
      let victims = this.s.oldestAlerts.all(now - limits.maxAgeMs, budget) as AlertRow[];
      if (victims.length < budget) {
        const excess = (this.s.countAlerts.get() as { n: number }).n - victims.length - limits.maxRows;
        if (excess > 0) {
          const n = Math.min(excess, budget - victims.length);
          // The oldest by age are the least recently seen too: skip past them.
          victims = (this.s.leastRecentAlerts.all(n + victims.length) as AlertRow[]);
          if (excess > n) more = true;
        }
      } else {
        more = true;
      }
      const rollup = new RollupDelta();
      for (const v of victims) {
        // A trigger takes its policies, occurrences and history with it.
        this.s.deleteFts.run(v.id, v.title, v.description, v.search_text);
        this.s.deleteAlert.run(v.id);
        rollup.add(-1, v, JSON.parse(v.policies) as PolicyRef[]);
        const key = `${v.agent}\u0000${v.fingerprint}`;
        if (this.open.get(key)?.row.id === v.id) this.open.delete(key);
      }
      rollup.write(this.s.rollup);
      if (victims.length) this.s.rollupTidy.run();
      alerts = victims.length;
      const byAge = this.s.trimEventsByAge.run(budget * 5, now - limits.eventIdMaxAgeMs).changes;
      eventIds += byAge;
      if (byAge === budget * 5) more = true;
      const { lo, hi } = this.s.eventIdRange.get() as { lo: number | null; hi: number | null };
      if (lo !== null && hi !== null && hi - lo + 1 > limits.maxEventIds) {
        // Rowids are dense in arrival order, so the oldest beyond the cap are a range.
        const cut = hi - limits.maxEventIds + 1;
        const upTo = Math.min(cut, lo + budget * 5);
        // Under a flood the count cap would reach ids an agent may still re-send: those stay.
        const trimmed = this.s.trimEventsBelow.run(upTo, cut, now - (limits.eventIdMinAgeMs ?? 0)).changes;
        eventIds += trimmed;
        if (upTo < cut && trimmed > 0) more = true;
      }
    })();
    return { alerts, eventIds, more };
  }
}
