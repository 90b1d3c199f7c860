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
    for (const v of Object.values(labels)) {
      if (v === '' || this.values.has(v) || this.values.size >= MAX_SEARCH_VALUES || this.text.length + v.length > MAX_SEARCH_TEXT) continue;
      this.values.add(v);
      this.text += `\n${v}`;
      added = true;
    }
    return added;
  }
}

/**
 * The full-text index (external content: the text stays in alert_text and
 * alert_search, read through the view alert_fts_content). The
 * store writes it itself rather than through triggers, and only when an
 * alert's text changed, so repeats cost the index nothing.
 */
export class SearchIndex {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      insert: db.prepare<unknown[]>('INSERT INTO alerts_fts (rowid, title, description, search_text) VALUES (?, ?, ?, ?)'),
      // The index has no copy of the text: removing a row takes the text it was indexed with.
      remove: db.prepare<unknown[]>("INSERT INTO alerts_fts (alerts_fts, rowid, title, description, search_text) VALUES ('delete', ?, ?, ?, ?)"),
    };
  }

  insert(id: number, title: string, description: string, searchText: string): void {
    this.s.insert.run(id, title, description, searchText);
  }

  remove(id: number, title: string, description: string, searchText: string | undefined): void {
    this.s.remove.run(id, title, description, searchText);
  }
}
