import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStatus } from './alert-query.js';
import { rollupKeys } from './rollups.js';
import { iso, OPEN_COLS, JOINED, SEARCH_JOIN } from './rows.js';
import { SearchText } from './search-text.js';
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
  /** The start of search_text that the main full-text index has (alerts_fts): the text the alert opened with. */
  mainText: string;
  /** The rest, as alerts_fts_more has it ('' while there is none). */
  moreText: string;
  /** Title and description as the full-text index has them, while this batch changes them (an older occurrence arrived late). */
  indexedText?: { title: string; description: string } | undefined;
  searchChanged: boolean;
  severityChanged: boolean;
  /** last_received_at or clock_skew changed in this batch. */
  receiptChanged: boolean;
  isNew: boolean;
  /** Samples that came with this batch, newest last. */
  batchSamples: unknown[];
  /** Ids of this batch's events stored into the alert. */
  batchEvents: string[];
  /** Occurrences of this batch not in the rollup yet: added once per alert per batch. */
  batchCount: number;
  /** This batch's newest occurrences, not written yet. */
  pending: PendingOccurrence[];
  /** The occurrence that set the severity, when a burst pushed it out of `pending`: written to the pinned slot. */
  pendingSetter: PendingOccurrence | undefined;
  /** Asked for since the cache last considered evicting it. */
  used: boolean;
  /** The pinned slot holds an occurrence that no longer set the severity. */
  pinnedStale: boolean;
  /** Its rollup rows (dimension, value, status), while severity and status stay. */
  rollupKeys: string[];
  iso: { first: [number, string]; last: [number, string]; received: [number, string]; created: string };
}

const CACHE_MAX = 20_000;

const keyOf = (agent: string, fingerprint: string) => `${agent}\u0000${fingerprint}`;

export class OpenAlerts {
  /** By agent + fingerprint, in the order they came in or last survived an eviction (see committed). */
  private readonly map = new Map<string, OpenEntry>();
  private readonly findOpen;

  constructor(db: DB) {
    this.findOpen = db.prepare(`SELECT ${OPEN_COLS} FROM ${JOINED} ${SEARCH_JOIN} WHERE a.agent = ? AND a.fingerprint = ? AND a.status != 'resolved'`);
  }

  /** The open alert of a fingerprint, from memory or the database; marks it used. */
  get(agent: string, fingerprint: string): OpenEntry | undefined {
    const key = keyOf(agent, fingerprint);
    const e = this.map.get(key);
    if (e) {
      e.used = true;
      return e;
    }
    const row = this.findOpen.get(agent, fingerprint) as AlertRow | undefined;
    if (!row) return undefined;
    const searchText = row.search_text ?? '';
    const mainText = row.main_text ?? searchText;
    delete row.search_text;
    delete row.main_text;
    const policies = JSON.parse(row.policies) as PolicyRef[];
    const loaded: OpenEntry = {
      row,
      labels: JSON.parse(row.labels) as Record<string, string>,
      policies,
      details: JSON.parse(row.details) as Record<string, unknown>,
      search: SearchText.parse(searchText),
      mainText,
      moreText: searchText.length > mainText.length ? searchText.slice(mainText.length + 1) : '',
      searchChanged: false,
      severityChanged: false,
      receiptChanged: false,
      isNew: false,
      batchSamples: [],
      batchEvents: [],
      batchCount: 0,
      pending: [],
      pendingSetter: undefined,
      pinnedStale: false,
      used: false,
      rollupKeys: rollupKeys(row, policies),
      iso: {
        first: [row.first_seen, iso(row.first_seen)],
        last: [row.last_seen, iso(row.last_seen)],
        received: [row.last_received_at, iso(row.last_received_at)],
        created: iso(row.created_at),
      },
    };
    this.map.set(key, loaded);
    return loaded;
  }

  /** Remembers an alert ingest just opened. */
  add(e: OpenEntry): void {
    this.map.set(keyOf(e.row.agent, e.row.fingerprint), e);
  }

  /** The cached entry of alert `id`, if it is the open one of its fingerprint. */
  entryOf(agent: string, fingerprint: string, id: number): OpenEntry | undefined {
    const e = this.map.get(keyOf(agent, fingerprint));
    return e?.row.id === id ? e : undefined;
  }

  /** Forgets alert `id` (resolved or purged). */
  forget(agent: string, fingerprint: string, id: number): void {
    if (this.entryOf(agent, fingerprint, id)) this.map.delete(keyOf(agent, fingerprint));
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
    for (const e of entries) this.map.delete(keyOf(e.row.agent, e.row.fingerprint));
  }

  /** Clears per-batch state after a commit, and bounds the cache. */
  committed(entries: Iterable<OpenEntry>): void {
    for (const e of entries) {
      e.isNew = false;
      e.searchChanged = false;
      e.severityChanged = false;
      e.receiptChanged = false;
      e.batchSamples = [];
      e.batchEvents = [];
    }
    // Second chance (CLOCK) rather than moving an entry to the end on every hit:
    // that delete and set per repeat was a visible cost. From the oldest, an
    // entry used since the last pass moves to the end with its mark cleared, one
    // not used goes. One iterator for the pass: a fresh keys() per eviction would
    // walk past every entry deleted before it (a Map keeps them until it rehashes).
    if (this.map.size > CACHE_MAX) {
      for (const [k, e] of this.map) {
        if (this.map.size <= CACHE_MAX) break;
        this.map.delete(k);
        if (e.used) {
          e.used = false;
          this.map.set(k, e);
        }
      }
    }
  }
}
