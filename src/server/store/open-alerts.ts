import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStatus } from './alert-query.js';
import { rollupKeys } from './rollups.js';
import { iso, OPEN_COLS, JOINED, SEARCH_JOIN } from './rows.js';
import { SearchText, type SearchIndex } from './search-text.js';
import type { AlertRow } from './types.js';

// Open alerts as ingest keeps them in memory between batches, so a repeat
// costs no read. Triage and purge tell the cache what they changed.

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

export type { PendingOccurrence };

export interface OpenEntry {
  row: AlertRow;
  labels: Record<string, string>;
  policies: PolicyRef[];
  details: Record<string, unknown>;
  search: SearchText;
  /** The search text the main full-text index has (alerts_fts): what the alert opened with. */
  mainText: string;
  /** Title and description as the full-text index has them, while this batch changes them (an older occurrence arrived late). */
  indexedText?: { title: string; description: string } | undefined;
  searchChanged: boolean;
  severityChanged: boolean;
  /** last_received_at or clock_skew changed in this batch. */
  receiptChanged: boolean;
  isNew: boolean;
  /**
   * Samples that came with this batch, newest last. Undefined between batches, as
   * is batchEvents: an array a long-lived cache entry holds from one batch to the
   * next outlives the young generation, and its garbage is left to the old
   * generation's collector; dropped at the commit, a batch's arrays die young.
   */
  batchSamples: unknown[] | undefined;
  /** Ids of this batch's events stored into the alert. */
  batchEvents: string[] | undefined;
  /** Occurrences of this batch not in the rollup yet: added once per alert per batch. */
  batchCount: number;
  /** This batch's newest occurrences, not written yet (undefined between batches). */
  pending: PendingOccurrence[] | undefined;
  /** The occurrence that set the severity, when a burst pushed it out of `pending`: written to the pinned slot. */
  pendingSetter: PendingOccurrence | undefined;
  /** Asked for since the cache last considered evicting it. */
  used: boolean;
  /** The pinned slot holds an occurrence that no longer set the severity. */
  pinnedStale: boolean;
  /** Its rollup rows (dimension, value, status), while severity and status stay. */
  rollupKeys: readonly string[];
  /** Times as formatted, with the value each is of (last_seen changes with nearly every batch and is formatted each time). */
  iso: { first: [number, string]; received: [number, string]; created: string };
}

const CACHE_MAX = 20_000;

/**
 * The one way an entry is made: for an alert ingest opens (`isNew`) and for one
 * loaded from the database. `mainText` is the search text the main full-text
 * index has; `search` holds it and the values added since.
 */
export function openEntry(row: AlertRow, v: Pick<OpenEntry, 'labels' | 'policies' | 'details' | 'search' | 'mainText' | 'isNew'>): OpenEntry {
  return {
    row,
    labels: v.labels,
    policies: v.policies,
    details: v.details,
    search: v.search,
    mainText: v.mainText,
    searchChanged: false,
    severityChanged: false,
    receiptChanged: false,
    isNew: v.isNew,
    batchSamples: undefined,
    batchEvents: undefined,
    batchCount: 0,
    pending: undefined,
    pendingSetter: undefined,
    pinnedStale: false,
    used: false,
    rollupKeys: rollupKeys(row, v.policies),
    iso: {
      first: [row.first_seen, iso(row.first_seen)],
      received: [row.last_received_at, iso(row.last_received_at)],
      created: iso(row.created_at),
    },
  };
}

export class OpenAlerts {
  /**
   * By agent, then fingerprint (no key is built per event), each in the order
   * entries came in or last survived an eviction (see committed).
   */
  private readonly byAgent = new Map<string, Map<string, OpenEntry>>();
  private size = 0;
  private readonly findOpen;

  constructor(
    db: DB,
    private readonly index: SearchIndex,
    private readonly max = CACHE_MAX,
  ) {
    this.findOpen = db.prepare(`SELECT ${OPEN_COLS} FROM ${JOINED} ${SEARCH_JOIN} WHERE a.agent = ? AND a.fingerprint = ? AND a.status != 'resolved'`);
  }

  /** The open alert of a fingerprint, from memory or the database; marks it used. */
  get(agent: string, fingerprint: string): OpenEntry | undefined {
    const e = this.byAgent.get(agent)?.get(fingerprint);
    if (e) {
      e.used = true;
      return e;
    }
    const row = this.findOpen.get(agent, fingerprint) as AlertRow | undefined;
    if (!row) return undefined;
    const mainText = row.search_text ?? '';
    delete row.search_text;
    const loaded = openEntry(row, {
      labels: JSON.parse(row.labels) as Record<string, string>,
      policies: JSON.parse(row.policies) as PolicyRef[],
      details: JSON.parse(row.details) as Record<string, unknown>,
      search: SearchText.parse(mainText, this.index.added(row.id)),
      mainText,
      isNew: false,
    });
    this.add(loaded);
    return loaded;
  }

  /** Remembers an alert: one ingest just opened, or one loaded. */
  add(e: OpenEntry): void {
    let m = this.byAgent.get(e.row.agent);
    if (!m) {
      m = new Map();
      this.byAgent.set(e.row.agent, m);
    }
    const n = m.size;
    m.set(e.row.fingerprint, e);
    this.size += m.size - n;
  }

  /** The cached entry of alert `id`, if it is the open one of its fingerprint. */
  entryOf(agent: string, fingerprint: string, id: number): OpenEntry | undefined {
    const e = this.byAgent.get(agent)?.get(fingerprint);
    return e?.row.id === id ? e : undefined;
  }

  /** Forgets alert `id` (resolved or purged). */
  forget(agent: string, fingerprint: string, id: number): void {
    if (this.entryOf(agent, fingerprint, id)) this.remove(agent, fingerprint);
  }

  private remove(agent: string, fingerprint: string): void {
    const m = this.byAgent.get(agent);
    if (!m?.delete(fingerprint)) return;
    this.size--;
    if (m.size === 0) this.byAgent.delete(agent);
  }

  /** A status change of an open alert other than resolving it. */
  statusChanged(e: OpenEntry, to: AlertStatus, at: number, seq: number): void {
    e.row.status = to;
    e.row.updated_at = at;
    e.row.seq = seq;
    e.rollupKeys = rollupKeys(e.row, e.policies);
  }

  /** Forgets what a rolled-back batch touched: the database does not have it either. */
  drop(entries: Iterable<OpenEntry>): void {
    for (const e of entries) this.remove(e.row.agent, e.row.fingerprint);
  }

  /** Clears per-batch state after a commit, and bounds the cache. */
  committed(entries: Iterable<OpenEntry>): void {
    for (const e of entries) {
      e.isNew = false;
      e.searchChanged = false;
      e.severityChanged = false;
      e.receiptChanged = false;
      e.batchSamples = undefined;
      e.batchEvents = undefined;
    }
    // Second chance (CLOCK) rather than moving an entry to the end on every hit:
    // a delete and a set per repeat is a visible cost. A first round goes over
    // every agent's entries from the oldest: one used since the last pass moves to
    // the end with its mark cleared, one not used goes; a second (rarely needed)
    // takes the oldest. One iterator a map a round, stopped at the entries it
    // moved: a fresh keys() per eviction would walk past every entry deleted
    // before it (a Map keeps them until it rehashes).
    for (let round = 0; round < 2 && this.size > this.max; round++) {
      for (const [agent, m] of this.byAgent) {
        let left = m.size;
        for (const [k, e] of m) {
          if (left-- === 0 || this.size <= this.max) break;
          m.delete(k);
          if (e.used) {
            e.used = false;
            m.set(k, e);
          } else {
            this.size--;
          }
        }
        if (m.size === 0) this.byAgent.delete(agent);
      }
    }
  }
}
