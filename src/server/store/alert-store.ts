import type { DB } from '../../shared/sqlite/open.js';
import type { AlertFilter, AlertStatus, CountBy, ListQuery } from './alert-query.js';
import { Changes, type ChangeListener } from './changes.js';
import { Ingest } from './ingest.js';
import { Lifecycle } from './lifecycle.js';
import { Lists, type ChangesPage } from './list.js';
import { OpenAlerts } from './open-alerts.js';
import { Purge, type PurgeLimits, type PurgeResult } from './purge.js';
import { Reads } from './reads.js';
import { Rollups } from './rollups.js';
import { SearchIndex } from './search-text.js';
import type { AlertDetail, CountRow, IncomingEvent, IngestResult, ListResult, StoredAlert } from './types.js';

// The alert store: one facade over its parts, each with one job: ingest
// (agent batches), lifecycle (triage), reads and lists (the feed's queries),
// rollups (counts), purge (retention), and changes (the change counter and
// the one extension point, onChange). Everyone outside the store talks to
// this class, never to the store's tables.

export { STATUSES, type AlertStatus } from './alert-query.js';
export type { AlertChange, ChangeListener, ChangeTx } from './changes.js';
export { CHANGES_SCAN_BUDGET, DRIVER_MAX, SCAN_BUDGET, type ChangesPage } from './list.js';
export type { PurgeLimits, PurgeResult } from './purge.js';
export { rowToAlert } from './rows.js';
export * from './types.js';

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

export class AlertStore {
  private readonly changes: Changes;
  private readonly rollups: Rollups;
  private readonly reads: Reads;
  private readonly lists: Lists;
  private readonly ingester: Ingest;
  private readonly lifecycle: Lifecycle;
  private readonly purge: Purge;

  constructor(
    private readonly db: DB,
    opts: { scanBudget?: number; countsTextBudget?: number; changesScanBudget?: number } = {},
  ) {
    dropStatsOfASmallStore(db);
    const index = new SearchIndex(db);
    const open = new OpenAlerts(db, index);
    this.changes = new Changes(db);
    this.rollups = new Rollups(db);
    this.reads = new Reads(db);
    this.lists = new Lists(db, this.reads, this.rollups, opts.scanBudget, opts.countsTextBudget, opts.changesScanBudget);
    this.ingester = new Ingest(db, this.changes, open, this.rollups, index);
    this.lifecycle = new Lifecycle(db, this.changes, open, this.rollups);
    this.purge = new Purge(db, open, this.rollups, index);
  }

  /**
   * The one way to act on changes: `listener` gets the change records of each
   * ingest or status change inside its transaction (what it writes commits
   * with them; if it throws, nothing is kept), and may ask the transaction to
   * run work after the commit (`tx.afterCommit`). Returns what removes it.
   */
  onChange(listener: ChangeListener): () => void {
    return this.changes.listen(listener);
  }

  /** The change counter of the newest stored change. */
  currentSeq(): number {
    return this.changes.current();
  }

  /** Stores a batch in one transaction; the caller acknowledges after it returns. */
  ingest(agent: string, events: readonly IncomingEvent[]): IngestResult {
    return this.ingester.ingest(agent, events);
  }

  /**
   * Moves an alert to another status (any to any) and records who did it.
   * Returns undefined for an unknown id; throws VERDICT_CONFLICT when
   * reopening would make a second open alert for the same fingerprint.
   */
  setStatus(id: number, to: AlertStatus, actor: string): StoredAlert | undefined {
    return this.lifecycle.setStatus(id, to, actor);
  }

  /** Throws VERDICT_CONFLICT when `to` would make a second open alert for `a`'s fingerprint. */
  checkStatusChange(a: StoredAlert, to: AlertStatus): void {
    this.lifecycle.checkReopen(a, a.status, to);
  }

  get(id: number): StoredAlert | undefined {
    return this.reads.get(id);
  }

  /** An alert with its latest occurrences (newest first), the one that set its severity, and its status history (oldest first). */
  detail(id: number, occurrences?: number): AlertDetail | undefined {
    return this.reads.detail(id, occurrences);
  }

  /** The alert an event id was stored into (ids are kept as long as retention keeps them). */
  alertOfEvent(eventId: string): number | undefined {
    return this.reads.alertOfEvent(eventId);
  }

  /** A page of alerts, newest activity first unless sorted otherwise. */
  list(q: ListQuery): ListResult {
    return this.lists.list(q);
  }

  /** Alerts and occurrences per value of a dimension. */
  counts(by: CountBy, f: AlertFilter, limit = 20): CountRow[] {
    return this.lists.counts(by, f, limit);
  }

  /**
   * Alerts changed after `afterSeq` (oldest change first) that match the filters that never change on an alert,
   * from a read bounded by the rows it examines (`scannedTo`: where a read that hit the bound stopped).
   */
  changesSince(afterSeq: number, f: AlertFilter, limit: number): ChangesPage {
    return this.lists.changesSince(afterSeq, f, limit);
  }

  /** Whether some alert holds this namespace (the filters read a value with commas as one namespace if so). */
  holdsNamespace(ns: string): boolean {
    return this.lists.holdsNamespace(ns);
  }

  /** Which of these alert ids match a search (`q` as the list takes it). */
  matchingText(ids: readonly number[], q: string): Set<number> {
    return this.lists.matchingText(ids, q);
  }

  /** One bounded step of retention (retention.ts runs them). */
  purgeStep(limits: PurgeLimits, budget?: number, now?: number): PurgeResult {
    return this.purge.step(limits, budget, now);
  }

  /**
   * Keeps the query planner's statistics current as the tables change shape,
   * once the store is big enough for them to describe it. True when it ran.
   */
  refreshPlannerStats(): boolean {
    if (this.rollups.alerts() < PLANNER_STATS_MIN_ALERTS) return false;
    this.db.pragma('optimize');
    return true;
  }
}
