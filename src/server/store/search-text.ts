import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';

// search_text: what full-text search sees of an alert besides its title and
// description: namespace, policies, rule, then one label value a line, growing
// as occurrences bring values not seen on the alert yet.

/**
 * Label values kept searchable per alert, those it opened with included; a
 * flood of distinct values stops adding after these. It also bounds the values
 * added after the alert opened, so each has a slot k < 64 of its own in
 * alerts_fts_added (rowid = alert id × ADDED_SLOTS + k).
 */
const MAX_SEARCH_VALUES = 64;
const ADDED_SHIFT = 6;
export const ADDED_SLOTS = 1 << ADDED_SHIFT;
/** SQL of an alerts_fts_added row's alert id. */
export const ADDED_ALERT_ID = `rowid >> ${ADDED_SHIFT}`;
const MAX_SEARCH_TEXT = 4096;
const HEADER_LINES = 3;

function policiesText(policies: readonly PolicyRef[]): string {
  return policies.map((p) => `${p.namespace}/${p.name} ${p.kind}`).join(' ');
}

export class SearchText {
  /** Label values already in text. */
  readonly values: Set<string>;
  /**
   * Values added since the last write, not in a full-text index yet (undefined while none: see OpenEntry.batchSamples).
   * Null while the alert is not written: every value goes into the text it opens with, so none is kept apart. Ingest sets
   * it to undefined once that text is written; values added after it go to alerts_fts_added (SearchIndex.addFresh).
   */
  fresh: string[] | undefined | null;

  private constructor(
    /** What search sees: the text the alert opened with, then the values added since, one a line. */
    public text: string,
    values: Iterable<string>,
    /** The next free slot in alerts_fts_added. */
    public nextSlot: number,
    written: boolean,
  ) {
    this.values = new Set(values);
    this.fresh = written ? undefined : null;
  }

  /** A new alert's, not written yet. */
  static of(namespace: string, policies: readonly PolicyRef[], rule: string): SearchText {
    return new SearchText(`${namespace}\n${policiesText(policies)}\n${rule}`, [], 0, false);
  }

  /** As stored: the text the alert opened with (header lines, then values), and the values added since with their slots. */
  static parse(text: string, added: readonly { slot: number; value: string }[] = []): SearchText {
    const values = text.split('\n').slice(HEADER_LINES);
    let all = text;
    for (const a of added) {
      values.push(a.value);
      all += `\n${a.value}`;
    }
    return new SearchText(all, values, added.length ? added[added.length - 1]!.slot + 1 : 0, true);
  }

  /** Adds label values not seen on this alert yet; true when the text changed. */
  add(labels: Record<string, string>): boolean {
    let added = false;
    for (const k in labels) {
      const v = labels[k]!;
      if (v === '' || this.values.has(v) || this.values.size >= MAX_SEARCH_VALUES || this.text.length + v.length > MAX_SEARCH_TEXT) continue;
      // Cannot happen while MAX_SEARCH_VALUES <= ADDED_SLOTS; the slot must never spill into the next alert's rowids.
      if (this.nextSlot + (this.fresh?.length ?? 0) >= ADDED_SLOTS) break;
      this.values.add(v);
      this.text += `\n${v}`;
      if (this.fresh !== null) (this.fresh ??= []).push(v);
      added = true;
    }
    return added;
  }
}

/**
 * The alerts_fts_added rowids of alerts loId to hiId, as BigInts so they bind
 * as integers: FTS5 seeks an integer rowid range but scans the whole table for
 * a REAL one (35 ms against 0.2 at 200,000 rows).
 */
export function addedRowids(loId: number, hiId = loId): [bigint, bigint] {
  return [BigInt(loId) * BigInt(ADDED_SLOTS), BigInt(hiId) * BigInt(ADDED_SLOTS) + BigInt(ADDED_SLOTS - 1)];
}

/**
 * The full-text indexes. alerts_fts has an alert's title, description and the
 * search text it opened with (external content: the text stays in alert_text
 * and alert_search, read through the view alert_fts_content). alerts_fts_added
 * has one row per label value a repeat added since (rowid = alert id ×
 * ADDED_SLOTS + slot, keeping its own text), written once and never rewritten: a
 * new pod or user costs one insert of its few words. The store writes both
 * itself rather than through triggers, and only when the text changed.
 */
export class SearchIndex {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      insert: db.prepare<unknown[]>('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (?, ?, ?, ?)'),
      // The index has no copy of the text: removing a row takes the text it was indexed with.
      remove: db.prepare<unknown[]>("INSERT INTO alerts_fts (alerts_fts, rowid, title, description, search_text) VALUES ('delete', ?, ?, ?, ?)"),
      insertAdded: db.prepare<unknown[]>('INSERT INTO alerts_fts_added (rowid, value) VALUES (?, ?)'),
      removeAdded: db.prepare<unknown[]>('DELETE FROM alerts_fts_added WHERE rowid BETWEEN ? AND ?'),
      added: db.prepare<unknown[]>('SELECT rowid AS slot, value FROM alerts_fts_added WHERE rowid BETWEEN ? AND ? ORDER BY rowid'),
    };
  }

  insert(id: number, title: string, description: string, searchText: string): void {
    this.s.insert.run(id, title, description, searchText);
  }

  remove(id: number, title: string, description: string, searchText: string | undefined): void {
    this.s.remove.run(id, title, description, searchText);
  }

  /** Removes the values added to alert `id` (it is being deleted). */
  removeAdded(id: number): void {
    this.s.removeAdded.run(...addedRowids(id));
  }

  /** Indexes the values `search` added since the last write, each in the next slot. */
  addFresh(id: number, search: SearchText): void {
    for (const v of search.fresh ?? []) this.s.insertAdded.run(id * ADDED_SLOTS + search.nextSlot++, v);
    search.fresh = undefined;
  }

  /** The values added to alert `id` since it opened, in slot order (slot within the alert). */
  added(id: number): { slot: number; value: string }[] {
    const rows = this.s.added.all(...addedRowids(id)) as { slot: number; value: string }[];
    for (const r of rows) r.slot -= id * ADDED_SLOTS;
    return rows;
  }
}
