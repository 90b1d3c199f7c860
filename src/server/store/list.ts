import type { Statement } from 'better-sqlite3';
import { VerdictError } from '../../shared/errors.js';
import { preparedCache, type DB } from '../../shared/sqlite/open.js';
import {
  changesSql,
  countsSql,
  cursorFromKey,
  cursorOf,
  drivers,
  listSql,
  SCAN_FN,
  literalSql,
  searchTerms,
  sizeSql,
  visitedMinIdSql,
  type AlertFilter,
  type CountBy,
  type Driver,
  type ListQuery,
} from './alert-query.js';
import type { Reads } from './reads.js';
import { ADDED_ALERT_ID, addedRowids } from './search-text.js';
import { Rollups } from './rollups.js';
import { NARROW_COLS } from './rows.js';
import type { CountRow, ListResult, NarrowRow, StoredAlert } from './types.js';

// Query planning for the feed: pages, counts, changes after a cursor and
// search, each bounded in work (alert-query.ts builds the SQL).

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

/**
 * Alerts whose text counts may read for a search with no letter or digit (about
 * 2.5 µs each: 125 ms). Counts that would read more are refused with what to narrow.
 */
export const COUNTS_TEXT_BUDGET = 50_000;

/**
 * Changes a stream's catch-up read may examine (about 1 µs each, 2 to 4 µs with
 * a search that has no index). A cursor far behind with filters that match few
 * alerts is caught up over several reads, so ingest is never held for the walk.
 */
export const CHANGES_SCAN_BUDGET = 8_000;

/** A page of changes after a cursor; `scannedTo` when the read stopped at its budget. */
export interface ChangesPage {
  alerts: StoredAlert[];
  /** The last seq the read examined: nothing up to it is left to read. Absent when the page ended otherwise. */
  scannedTo?: number;
}

/** Thrown by the scan function when a list query has examined its budget of rows. */
// Thrown (and caught below) to stop a scan that spent its budget; never leaves this file.
const SCAN_BUDGET_SPENT = Symbol('scan budget spent');

export class Lists {
  private readonly prepared: (sql: string) => Statement<unknown[]>;
  /** State of the list scan in progress (list queries run one at a time: the store is synchronous). */
  private scan: { n: number; budget: number; last: (number | string)[] | undefined } = { n: 0, budget: SCAN_BUDGET, last: undefined };

  constructor(
    db: DB,
    private readonly reads: Reads,
    private readonly rollups: Rollups,
    private readonly scanBudget = SCAN_BUDGET,
    private readonly countsTextBudget = COUNTS_TEXT_BUDGET,
    private readonly changesScanBudget = CHANGES_SCAN_BUDGET,
  ) {
    this.prepared = preparedCache(db);
    db.function(SCAN_FN, { varargs: true, deterministic: false }, (...key: unknown[]) => {
      const scan = this.scan;
      if (scan.n >= scan.budget) throw SCAN_BUDGET_SPENT;
      scan.n++;
      scan.last = key as (number | string)[];
      return 1;
    });
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
      if (e !== SCAN_BUDGET_SPENT) throw e;
      spent = true;
    }
    let next: string | null = null;
    if (rows.length === q.limit) next = cursorOf(rows[rows.length - 1] as unknown as Record<string, unknown>, sort, order);
    // The walk stopped early: continue after the last row it examined (matching or not).
    else if (scan && spent && this.scan.last) next = cursorFromKey(this.scan.last, sort, order);
    return { alerts: this.reads.withText(rows), next_cursor: next };
  }

  /**
   * Alerts and their occurrences per value of a dimension. With no filter but
   * status, from the rollup (constant time); otherwise counted from the alerts.
   */
  counts(by: CountBy, f: AlertFilter, limit = 20): CountRow[] {
    if (Rollups.answers(f)) return this.rollups.counts(by, f, limit);
    const { sql, params } = countsSql(by, f, limit);
    this.scan = { n: 0, budget: this.countsTextBudget, last: undefined };
    try {
      return this.prepared(sql).all(...params) as CountRow[];
    } catch (e) {
      if (e !== SCAN_BUDGET_SPENT) throw e;
      throw new VerdictError(
        'VERDICT_BAD_REQUEST',
        `q: counting alerts that contain ${JSON.stringify(searchTerms(f.q ?? '')?.literal.join(' '))} (text with no letter or digit, which has no index) would read the text of more than ${this.countsTextBudget} alerts; narrow the counts with since, another filter or a word`,
      );
    }
  }

  /**
   * Alerts changed after `afterSeq` (oldest change first) that match the filters
   * that cannot change on an alert; the stream applies the rest itself. A read
   * examines at most the changes scan budget: past it, the page is short and
   * `scannedTo` is the last seq examined, where the next read continues.
   */
  changesSince(afterSeq: number, f: AlertFilter, limit: number): ChangesPage {
    const { sql, params } = changesSql(NARROW_COLS, f, afterSeq, limit);
    const rows: NarrowRow[] = [];
    this.scan = { n: 0, budget: this.changesScanBudget, last: undefined };
    try {
      for (const r of this.prepared(sql).iterate(...params)) rows.push(r as NarrowRow);
    } catch (e) {
      if (e !== SCAN_BUDGET_SPENT) throw e;
      return { alerts: this.reads.withText(rows), scannedTo: this.scan.last![0] as number };
    }
    return { alerts: this.reads.withText(rows) };
  }

  /** Whether some alert holds this namespace: one seek of the namespace index. */
  holdsNamespace(ns: string): boolean {
    return this.prepared('SELECT 1 FROM alerts INDEXED BY alerts_namespace WHERE namespace = ? LIMIT 1').get(ns) !== undefined;
  }

  /** Which of these alert ids match a search (`q` as the list takes it: searchTerms). */
  matchingText(ids: readonly number[], q: string): Set<number> {
    let out: Set<number> | undefined;
    const terms = searchTerms(q);
    if (!ids.length || !terms) return new Set(ids);
    const inIds = `(${ids.map(() => '?').join(',')})`;
    // FTS5 seeks by a rowid range, not by `rowid >> 6 IN (...)`: the range of the ids' slots bounds the
    // scan of alerts_fts_added (BigInt, since a number binds as REAL, which FTS5 does not use as a bound).
    const [lo, hi] = addedRowids(Math.min(...ids), Math.max(...ids));
    const sets: (() => { id: number }[])[] = [
      ...terms.fts.map(
        (term) => () =>
          // An added value's rowid is its alert's id × 64 + slot: the alert is rowid >> 6.
          this.prepared(
            `SELECT rowid AS id FROM alerts_fts WHERE alerts_fts MATCH ? AND rowid IN ${inIds} UNION SELECT ${ADDED_ALERT_ID} AS id FROM alerts_fts_added WHERE alerts_fts_added MATCH ? AND rowid BETWEEN ? AND ? AND ${ADDED_ALERT_ID} IN ${inIds}`,
          ).all(term, ...ids, term, lo, hi, ...ids) as { id: number }[],
      ),
      ...terms.literal.map((lit) => () => {
        const m = literalSql(lit, 'alerts.id');
        return this.prepared(`SELECT id FROM alerts WHERE id IN ${inIds} AND ${m.sql}`).all(...ids, ...m.params) as { id: number }[];
      }),
    ];
    for (const rows of sets) {
      const hit = new Set(rows().map((r) => r.id));
      out = out ? new Set([...out].filter((id) => hit.has(id))) : hit;
      if (!out.size) break;
    }
    return out ?? new Set();
  }
}
