import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';

// search_text: what full-text search sees of an alert besides its title and
// description: namespace, policies, rule, then one label value a line, growing
// as occurrences bring values not seen on the alert yet.

/** Label values kept searchable per alert; a flood of distinct values stops adding after these. */
const MAX_SEARCH_VALUES = 64;
const MAX_SEARCH_TEXT = 4096;
const HEADER_LINES = 3;

function policiesText(policies: readonly PolicyRef[]): string {
  return policies.map((p) => `${p.namespace}/${p.name} ${p.kind}`).join(' ');
}

export class SearchText {
  /** Label values already in text. */
  readonly values: Set<string>;

  private constructor(
    public text: string,
    values: Iterable<string>,
  ) {
    this.values = new Set(values);
  }

  static of(namespace: string, policies: readonly PolicyRef[], rule: string): SearchText {
    return new SearchText(`${namespace}\n${policiesText(policies)}\n${rule}`, []);
  }

  /** As stored: the header lines, then the values. */
  static parse(text: string): SearchText {
    return new SearchText(text, text.split('\n').slice(HEADER_LINES));
  }

  /** Adds label values not seen on this alert yet; true when the text changed. */
  add(labels: Record<string, string>): boolean {
    let added = false;
    for (const k in labels) {
      const v = labels[k]!;
      if (v === '' || this.values.has(v) || this.values.size >= MAX_SEARCH_VALUES || this.text.length + v.length > MAX_SEARCH_TEXT) continue;
      this.values.add(v);
      this.text += `\n${v}`;
      added = true;
    }
    return added;
  }
}

/**
 * The length of `s` as SQLite counts characters (alert_search.main_len): a
 * surrogate pair is one character, and so is a lone surrogate (stored as U+FFFD).
 */
export function sqliteLength(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/**
 * The full-text indexes (external content: the text stays in alert_text and
 * alert_search, read through the views alert_fts_content and
 * alert_fts_more_content). alerts_fts has an alert's title, description and the
 * search text it opened with; alerts_fts_more the label values added since, so
 * a new value re-indexes those few words, not the whole alert. The store writes
 * both itself rather than through triggers, and only when the text changed.
 */
export class SearchIndex {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      insert: db.prepare<unknown[]>('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (?, ?, ?, ?)'),
      // The index has no copy of the text: removing a row takes the text it was indexed with.
      remove: db.prepare<unknown[]>("INSERT INTO alerts_fts (alerts_fts, rowid, title, description, search_text) VALUES ('delete', ?, ?, ?, ?)"),
      insertMore: db.prepare<unknown[]>('INSERT INTO alerts_fts_more (rowid, search_text) VALUES (?, ?)'),
      removeMore: db.prepare<unknown[]>("INSERT INTO alerts_fts_more (alerts_fts_more, rowid, search_text) VALUES ('delete', ?, ?)"),
    };
  }

  insert(id: number, title: string, description: string, searchText: string): void {
    this.s.insert.run(id, title, description, searchText);
  }

  remove(id: number, title: string, description: string, searchText: string | undefined): void {
    this.s.remove.run(id, title, description, searchText);
  }

  /** Replaces the values added since the alert opened: `was` as indexed ('' for none), `text` now. */
  replaceMore(id: number, was: string, text: string): void {
    if (was) this.s.removeMore.run(id, was);
    if (text) this.s.insertMore.run(id, text);
  }
}
