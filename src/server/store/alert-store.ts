import type { Statement } from 'better-sqlite3';
import { EventEmitter } from 'node:events';
import { MAX_SAMPLES, SEVERITY_RANK, type AlertPayload, type PolicyRef, type Severity } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import {
  changesSql, countsSql, cursorOf, ftsProbeSql, listSql, QueryError, STATUSES,
  type AlertFilter, type AlertStatus, type CountBy, type ListQuery,
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

/** How many of the latest events and sample sets each alert keeps. */
export const OCCURRENCES_KEPT = 20;
export const SAMPLE_SETS_KEPT = MAX_SAMPLES;
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
  count: number;
  events: number;
  first_seen: number;
  last_seen: number;
  created_at: number;
  updated_at: number;
  seq: number;
}

const ROW_COLS = 'id, fingerprint, agent, status, source, severity, severity_rank, title, description, cluster, namespace, policies, rule, labels, details, count, events, first_seen, last_seen, created_at, updated_at, seq';

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

function entryToAlert(e: OpenEntry): StoredAlert {
  const r = e.row;
  return {
    id: r.id, fingerprint: r.fingerprint, agent: r.agent, status: r.status, source: r.source, severity: r.severity,
    title: r.title, description: r.description, cluster: r.cluster, namespace: r.namespace,
    // Shared with the cache, which replaces rather than mutates them.
    policies: e.policies, rule: r.rule, labels: e.labels, details: e.details, samples: e.batchSamples,
    count: r.count, events: r.events, first_seen: iso(r.first_seen), last_seen: iso(r.last_seen),
    created_at: iso(r.created_at), updated_at: iso(r.updated_at), seq: r.seq,
  };
}

/** An open alert as ingest keeps it in memory between batches. */
interface OpenEntry {
  row: AlertRow;
  labels: Record<string, string>;
  policies: PolicyRef[];
  details: Record<string, unknown>;
  /** Text last written to the full-text index, to skip rewriting it when a repeat says the same. */
  ftsKey: string;
  isNew: boolean;
  batchSamples: unknown[];
}

function timeMs(s: string, fallback: number): number {
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : fallback;
}

function labelsText(namespace: string, labels: Record<string, string>): string {
  return `${namespace} ${Object.values(labels).join(' ')}`;
}

function policiesText(policies: readonly PolicyRef[]): string {
  return policies.map((p) => `${p.namespace}/${p.name} ${p.kind}`).join(' ');
}

function capSample(s: unknown): unknown {
  const json = JSON.stringify(s) ?? 'null';
  if (json.length <= MAX_SAMPLE_BYTES) return s;
  return { truncated: true, bytes: json.length, preview: json.slice(0, 2048) };
}

export interface ListResult {
  alerts: StoredAlert[];
  next_cursor: string | null;
}

export interface PurgeLimits {
  /** Alerts not seen for this long are deleted with their occurrences and history. */
  maxAgeMs: number;
  /** At most this many alerts; the least recently seen go first. */
  maxRows: number;
  /** Event ids are kept this long to recognise a re-sent batch. */
  eventIdMaxAgeMs: number;
  maxEventIds: number;
}

export interface PurgeResult {
  alerts: number;
  eventIds: number;
  /** True when a limit still needs more work (the caller runs another step soon). */
  more: boolean;
}

/** Below this many full-text matches, a search sorts the matches; above, it walks the sort index. */
const FTS_SMALL = 4000;
const CACHE_MAX = 20_000;

export class AlertStore extends EventEmitter<{ changed: [StoredAlert[]] }> {
  private readonly s;
  private seq: number;
  private lastId: number;
  /** Open alerts by agent + fingerprint, least recently used first. */
  private readonly open = new Map<string, OpenEntry>();
  private readonly txHooks: ((changed: StoredAlert[]) => void)[] = [];
  private readonly listCache = new Map<string, Statement<unknown[]>>();

  constructor(private readonly db: DB) {
    super();
    this.s = {
      findOpen: db.prepare(`SELECT ${ROW_COLS} FROM alerts WHERE agent = ? AND fingerprint = ? AND status != 'resolved'`),
      getById: db.prepare(`SELECT ${ROW_COLS} FROM alerts WHERE id = ?`),
      insertAlert: db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, title, description, cluster, namespace,
        policies, rule, labels, details, count, events, first_seen, last_seen, created_at, updated_at, seq)
        VALUES (?, ?, ?, 'triggered', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      updateAlert: db.prepare(`UPDATE alerts SET severity = ?, severity_rank = ?, description = ?, labels = ?, count = ?, events = ?,
        first_seen = ?, last_seen = ?, updated_at = ?, seq = ? WHERE id = ?`),
      insertPolicy: db.prepare('INSERT OR IGNORE INTO alert_policies (alert_id, kind, namespace, name) VALUES (?, ?, ?, ?)'),
      insertFts: db.prepare('INSERT INTO alerts_fts (rowid, title, description, labels, policies, rule) VALUES (?, ?, ?, ?, ?, ?)'),
      deleteFts: db.prepare('DELETE FROM alerts_fts WHERE rowid = ?'),
      insertEvent: db.prepare('INSERT OR IGNORE INTO alert_events (event_id, alert_id, received_at) VALUES (?, ?, ?)'),
      putOccurrence: db.prepare(`INSERT OR REPLACE INTO alert_occurrences (alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      putSamples: db.prepare('INSERT OR REPLACE INTO alert_samples (alert_id, slot, sample_no, sample) VALUES (?, ?, ?, ?)'),
      samplesOf: db.prepare('SELECT sample FROM alert_samples WHERE alert_id = ? ORDER BY sample_no'),
      occurrencesOf: db.prepare('SELECT event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels FROM alert_occurrences WHERE alert_id = ? ORDER BY event_no DESC LIMIT ?'),
      historyOf: db.prepare('SELECT from_status, to_status, actor, at FROM alert_status_changes WHERE alert_id = ? ORDER BY id'),
      setStatus: db.prepare('UPDATE alerts SET status = ?, updated_at = ?, seq = ? WHERE id = ?'),
      addHistory: db.prepare('INSERT INTO alert_status_changes (alert_id, from_status, to_status, actor, at) VALUES (?, ?, ?, ?, ?)'),
      countAlerts: db.prepare('SELECT count(*) AS n FROM alerts'),
      oldestAlerts: db.prepare('SELECT id, agent, fingerprint FROM alerts INDEXED BY alerts_last_seen WHERE last_seen < ? ORDER BY last_seen, id LIMIT ?'),
      leastRecentAlerts: db.prepare('SELECT id, agent, fingerprint FROM alerts INDEXED BY alerts_last_seen ORDER BY last_seen, id LIMIT ?'),
      deleteAlert: db.prepare('DELETE FROM alerts WHERE id = ?'),
      trimEventsByAge: db.prepare('DELETE FROM alert_events WHERE id IN (SELECT id FROM (SELECT id, received_at FROM alert_events ORDER BY id LIMIT ?) WHERE received_at < ?)'),
      eventIdRange: db.prepare('SELECT min(id) AS lo, max(id) AS hi FROM alert_events'),
      trimEventsBelow: db.prepare('DELETE FROM alert_events WHERE id < ? AND id < ?'),
    };
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
    const e: OpenEntry = {
      row, labels, policies: JSON.parse(row.policies) as PolicyRef[], details: JSON.parse(row.details) as Record<string, unknown>,
      ftsKey: `${row.description}\n${labelsText(row.namespace, labels)}`, isNew: false, batchSamples: [] };
    this.open.set(key, e);
    return e;
  }

  /** Stores a batch in one transaction; the caller acknowledges after it returns. */
  ingest(agent: string, events: readonly IncomingEvent[]): IngestResult {
    const now = Date.now();
    const touched = new Map<number, OpenEntry>();
    const keys: string[] = [];
    const seq0 = this.seq;
    const id0 = this.lastId;
    let stored = 0;
    let duplicates = 0;
    const s = this.s;
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
          const description = p.description.slice(0, MAX_DESCRIPTION);
          if (!e) {
            this.lastId = alertId;
            const details = p.cilium ? { cilium: p.cilium } : p.falco ? { falco: p.falco } : {};
            e = {
              row: {
                id: alertId, fingerprint: p.fingerprint, agent, status: 'triggered', source: p.source, severity, severity_rank: SEVERITY_RANK[severity] ?? 0,
                title: p.title.slice(0, MAX_TITLE), description, cluster: p.cluster, namespace: p.namespace,
                policies: JSON.stringify(p.policies), rule: p.rule, labels: '', details: JSON.stringify(details),
                count: 0, events: 0, first_seen: first, last_seen: last, created_at: now, updated_at: now, seq: 0,
              },
              labels: p.labels, policies: p.policies, details, ftsKey: '', isNew: true, batchSamples: [],
            };
            this.open.set(key, e);
            for (const pr of p.policies) s.insertPolicy.run(alertId, pr.kind, pr.namespace, pr.name);
          } else {
            const r = e.row;
            if (last >= r.last_seen) {
              // The newest occurrence describes the alert now.
              r.description = description;
              e.labels = p.labels;
              r.severity = severity;
              r.severity_rank = SEVERITY_RANK[severity] ?? 0;
            }
            if (first < r.first_seen) r.first_seen = first;
            if (last > r.last_seen) r.last_seen = last;
          }
          const r = e.row;
          r.count += p.count;
          const eventNo = r.events++;
          r.updated_at = now;
          r.seq = ++this.seq;
          // Both rings: slot = n mod size, so the oldest entry is overwritten in place.
          s.putOccurrence.run(r.id, eventNo % OCCURRENCES_KEPT, eventNo, ev.id, now, p.count, first, last, severity, description, JSON.stringify(p.labels));
          if (p.samples.length) {
            const samples = p.samples.slice(-MAX_SAMPLES).map(capSample);
            s.putSamples.run(r.id, eventNo % SAMPLE_SETS_KEPT, eventNo, JSON.stringify(samples));
            e.batchSamples = e.batchSamples.concat(samples).slice(-MAX_SAMPLES);
          }
          if (!touched.has(r.id)) {
            touched.set(r.id, e);
            keys.push(key);
          }
        }
        // One row write per alert per batch, however many of its events came.
        for (const e of touched.values()) {
          const r = e.row;
          r.labels = JSON.stringify(e.labels);
          const lt = labelsText(r.namespace, e.labels);
          const ftsKey = `${r.description}\n${lt}`;
          if (e.isNew) {
            s.insertAlert.run(r.id, r.fingerprint, r.agent, r.source, r.severity, r.severity_rank, r.title, r.description, r.cluster, r.namespace,
              r.policies, r.rule, r.labels, r.details, r.count, r.events, r.first_seen, r.last_seen, r.created_at, r.updated_at, r.seq);
            s.insertFts.run(r.id, r.title, r.description, lt, policiesText(e.policies), r.rule);
          } else {
            s.updateAlert.run(r.severity, r.severity_rank, r.description, r.labels, r.count, r.events, r.first_seen, r.last_seen, r.updated_at, r.seq, r.id);
            if (ftsKey !== e.ftsKey) {
              s.deleteFts.run(r.id);
              s.insertFts.run(r.id, r.title, r.description, lt, policiesText(e.policies), r.rule);
            }
          }
          e.ftsKey = ftsKey;
        }
        changed = [...touched.values()].map(entryToAlert);
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
      e.batchSamples = [];
    }
    while (this.open.size > CACHE_MAX) this.open.delete(this.open.keys().next().value!);
    if (changed.length) this.emit('changed', changed);
    return { stored, duplicates, alerts: changed };
  }

  /** Registers work that must commit atomically with stored alerts. */
  onStoredInTransaction(hook: (changed: StoredAlert[]) => void): void {
    this.txHooks.push(hook);
  }

  get(id: number): StoredAlert | undefined {
    const r = this.s.getById.get(id) as AlertRow | undefined;
    if (!r) return undefined;
    const samples = (this.s.samplesOf.all(id) as { sample: string }[]).flatMap((x) => JSON.parse(x.sample) as unknown[]).slice(-MAX_SAMPLES);
    return rowToAlert(r, samples);
  }

  /** An alert with its latest occurrences (newest first) and its status history (oldest first). */
  detail(id: number, occurrences = OCCURRENCES_KEPT): { alert: StoredAlert; occurrences: Occurrence[]; history: StatusChange[] } | undefined {
    const alert = this.get(id);
    if (!alert) return undefined;
    const occ = (this.s.occurrencesOf.all(id, occurrences) as (Omit<Occurrence, 'labels' | 'received_at' | 'first_seen' | 'last_seen'> & { labels: string; received_at: number; first_seen: number; last_seen: number })[]).map((o) => ({
      ...o, received_at: iso(o.received_at), first_seen: iso(o.first_seen), last_seen: iso(o.last_seen), labels: JSON.parse(o.labels) as Record<string, string>,
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
        const cached = this.open.get(key);
        if (to === 'resolved') {
          if (cached?.row.id === id) this.open.delete(key);
        } else if (cached?.row.id === id) {
          cached.row.status = to;
          cached.row.updated_at = now;
          cached.row.seq = seq;
        }
        result = rowToAlert({ ...r, status: to, updated_at: now, seq });
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
    let st = this.listCache.get(sql);
    if (!st) {
      st = this.db.prepare<unknown[]>(sql);
      if (this.listCache.size > 500) this.listCache.clear();
      this.listCache.set(sql, st);
    }
    return st;
  }

  /** A page of alerts, newest activity first unless sorted otherwise. */
  list(q: ListQuery): ListResult {
    let small = false;
    if (q.q) {
      const probe = ftsProbeSql(q.q, FTS_SMALL);
      if (probe) small = (this.prepared(probe.sql).get(...probe.params) as { n: number }).n <= FTS_SMALL;
    }
    const { sql, params } = listSql(ROW_COLS, q, small);
    const rows = this.prepared(sql).all(...params) as AlertRow[];
    const sort = q.sort ?? 'last_seen';
    const order = q.order ?? 'desc';
    return {
      alerts: rows.map((r) => rowToAlert(r)),
      next_cursor: rows.length === q.limit ? cursorOf(rows[rows.length - 1] as unknown as Record<string, unknown>, sort, order) : null,
    };
  }

  counts(by: CountBy, f: AlertFilter, limit = 20): { key: string; alerts: number; events: number }[] {
    const { sql, params } = countsSql(by, f, limit);
    return this.prepared(sql).all(...params) as { key: string; alerts: number; events: number }[];
  }

  /**
   * Alerts changed after `afterSeq` (oldest change first) that match the filters
   * that cannot change on an alert; the stream applies the rest itself.
   */
  changesSince(afterSeq: number, f: AlertFilter, limit: number): StoredAlert[] {
    const { sql, params } = changesSql(ROW_COLS, f, afterSeq, limit);
    return (this.prepared(sql).all(...params) as AlertRow[]).map((r) => rowToAlert(r));
  }

  /** Which of these alert ids match a full-text query. */
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
      let victims = this.s.oldestAlerts.all(now - limits.maxAgeMs, budget) as { id: number; agent: string; fingerprint: string }[];
      if (victims.length < budget) {
        const excess = (this.s.countAlerts.get() as { n: number }).n - victims.length - limits.maxRows;
        if (excess > 0) {
          const n = Math.min(excess, budget - victims.length);
          const seen = new Set(victims.map((v) => v.id));
          const extra = (this.s.leastRecentAlerts.all(n + victims.length) as typeof victims).filter((v) => !seen.has(v.id)).slice(0, n);
          victims = victims.concat(extra);
          if (excess > n) more = true;
        }
      } else {
        more = true;
      }
      for (const v of victims) {
        this.s.deleteAlert.run(v.id);
        const key = `${v.agent}\u0000${v.fingerprint}`;
        if (this.open.get(key)?.row.id === v.id) this.open.delete(key);
      }
      alerts = victims.length;
      const byAge = this.s.trimEventsByAge.run(budget * 5, now - limits.eventIdMaxAgeMs).changes;
      eventIds += byAge;
      if (byAge === budget * 5) more = true;
      const { lo, hi } = this.s.eventIdRange.get() as { lo: number | null; hi: number | null };
      if (lo !== null && hi !== null && hi - lo + 1 > limits.maxEventIds) {
        // Rowids are dense in arrival order, so the oldest beyond the cap are a range.
        const cut = hi - limits.maxEventIds + 1;
        const upTo = Math.min(cut, lo + budget * 5);
        eventIds += this.s.trimEventsBelow.run(upTo, cut).changes;
        if (upTo < cut) more = true;
      }
    })();
    return { alerts, eventIds, more };
  }
}
