import { SEVERITIES, SEVERITY_RANK, type Severity } from '../../shared/alert/payload.js';
import { VerdictError } from '../../shared/errors.js';
import type { AlertStatus } from '../../shared/alert/stored.js';
import { ADDED_ALERT_ID, ADDED_SLOTS, addedRowids } from './search-text.js';

// Turns feed filters into SQL that stays an index range scan on a large table.
// SQLite's planner, left alone, happily picks an equality index and then sorts a
// million rows for a 50-row page; here each query names the index that drives it
// (the others are disabled with a unary +).

export { STATUSES, type AlertStatus } from '../../shared/alert/stored.js';

export const SORTS = ['last_seen', 'created', 'severity', 'count'] as const;
export type SortKey = (typeof SORTS)[number];
export type SortOrder = 'asc' | 'desc';

export interface AlertFilter {
  status?: AlertStatus[];
  severity?: Severity[];
  source?: string[];
  agent?: string[];
  namespace?: string[];
  /** "namespace/name", or "name" for a policy of that name in any namespace (and clusterwide ones). */
  policy?: string[];
  rule?: string[];
  /** Alerts last seen in [since, until] (unix ms). */
  since?: number;
  until?: number;
  /** Search: words through the full-text index, words with no letter or digit as written; see searchTerms. */
  q?: string;
}

export interface ListQuery extends AlertFilter {
  sort?: SortKey;
  order?: SortOrder;
  limit: number;
  cursor?: string;
}

/** Sort columns, ending in the id that makes every key unique (for cursors). */
const SORT_KEYS: Record<SortKey, readonly string[]> = {
  last_seen: ['last_seen', 'id'],
  created: ['id'],
  severity: ['severity_rank', 'id'],
  count: ['count', 'id'],
};
const SORT_INDEX: Record<SortKey, string | undefined> = {
  last_seen: 'alerts_last_seen',
  created: undefined, // the table itself, in rowid order
  severity: 'alerts_severity',
  count: 'alerts_count',
};

/**
 * Makes FTS5 syntax out of what people type. Each word becomes a quoted phrase,
 * so a hyphen, dot or colon inside it is a token separator, not an operator:
 * `payments-api` finds "payments-api" and does not mean "payments NOT api".
 * "Quoted text" is one phrase. Words are AND-ed. A word ending in * is a prefix
 * (`pay*`); prefixes are not implied, because a prefix query walks every
 * matching token's list and costs ten times a word on a large store.
 * Returns undefined when no word has a letter or digit (see searchTerms for the rest).
 */
export function toFtsQuery(q: string): string | undefined {
  const fts = searchTerms(q)?.fts;
  return fts?.length ? fts.join(' AND ') : undefined;
}

/**
 * What a search asks for: `fts`, phrases the full-text index can look up (FTS5
 * syntax); `literal`, words with no letter or digit (an emoji, `*`, `--`), which
 * the index's tokenizer drops, so each is looked for as written in the alert's
 * stored text. A non-empty search always asks for something: one that dropped
 * every word would match every alert. Undefined only for a blank `q`.
 */
export interface SearchTerms {
  fts: string[];
  literal: string[];
}

export function searchTerms(q: string): SearchTerms | undefined {
  if (!q.trim()) return undefined;
  const out: SearchTerms = { fts: [], literal: [] };
  const re = /"([^"]*)"?|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(q)) && out.fts.length + out.literal.length < 16) {
    const raw = (m[1] ?? m[2] ?? '').replaceAll('"', ' ');
    const prefix = m[2] !== undefined && /[\p{L}\p{N}]{2}\*+$/u.test(raw);
    const t = raw.replace(/\*+$/, '');
    if (/[\p{L}\p{N}]/u.test(t)) out.fts.push(`"${t}"${prefix ? '*' : ''}`);
    // A trailing * goes as after letters (`🐚*` is `🐚`); a word of stars only is the text asked for.
    else if (raw.trim()) out.literal.push(t.trim() || raw.trim());
  }
  // Only quotes (`""`): those are the text asked for.
  if (!out.fts.length && !out.literal.length) out.literal.push(q.trim());
  return out;
}

/**
 * The alerts whose stored text holds `literal` as written (case as given): title,
 * description, the search text it opened with, and the label values added since
 * (alerts_fts_added keeps its own text, rows id × 64 + slot). A per-row check of
 * one alert's few KB, never an index: it is bounded by what the query around it
 * visits (the list's scan budget, the stream's changed ids, the counts' filters).
 * `id` is the outer query's alert id column, qualified.
 */
export function literalSql(literal: string, id: string): Sql {
  return {
    sql: `(EXISTS (SELECT 1 FROM alert_text lt LEFT JOIN alert_search ls ON ls.id = lt.id WHERE lt.id = ${id} AND (instr(lt.title, ?) OR instr(lt.description, ?) OR instr(coalesce(ls.search_text, ''), ?))) OR EXISTS (SELECT 1 FROM alerts_fts_added WHERE rowid BETWEEN ${id} * ${ADDED_SLOTS} AND ${id} * ${ADDED_SLOTS} + ${ADDED_SLOTS - 1} AND instr(value, ?)))`,
    params: [literal, literal, literal, literal],
  };
}

/**
 * Ids of the alerts whose text has the phrase `term`. An alert's text is in two
 * full-text indexes (search-text.ts): the main one (rowid = alert id) and one
 * row per label value added since it opened (rowid = id × 64 + slot, so
 * `rowid >> 6` is the alert). A word matches in either, so each word of a search
 * is looked up in both and the words are AND-ed per alert. The ids may repeat
 * (an alert with the word in both, or in two added values); `minId` bounds both lookups.
 */
export function termSql(term: string, minId?: number): Sql {
  const b = minId !== undefined ? ' AND rowid >= ?' : '';
  // As a BigInt, so it binds as an integer: FTS5 seeks on an integer rowid bound but scans on a REAL one.
  const p = minId !== undefined ? [term, BigInt(minId)] : [term];
  const pAdded = minId !== undefined ? [term, addedRowids(minId)[0]] : [term];
  return {
    sql: `SELECT rowid AS id FROM alerts_fts WHERE alerts_fts MATCH ?${b} UNION ALL SELECT ${ADDED_ALERT_ID} AS id FROM alerts_fts_added WHERE alerts_fts_added MATCH ?${b}`,
    params: [...p, ...pAdded],
  };
}

export interface Cursor {
  sort: SortKey;
  order: SortOrder;
  key: (number | string)[];
}

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.sort, c.order, ...c.key])).toString('base64url');
}

export function decodeCursor(s: string, sort: SortKey, order: SortOrder): Cursor {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  } catch {
    v = undefined;
  }
  const n = SORT_KEYS[sort].length;
  if (!Array.isArray(v) || v.length !== n + 2 || !v.slice(2).every((x) => typeof x === 'number')) {
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      'cursor is not one this server made; pass next_cursor from the previous page unchanged, or drop it to start over',
    );
  }
  if (v[0] !== sort || v[1] !== order) {
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      `cursor belongs to sort=${String(v[0])}&order=${String(v[1])}; keep the sort of the first page or drop the cursor`,
    );
  }
  return { sort, order, key: v.slice(2) as number[] };
}

export function cursorOf(row: Record<string, unknown>, sort: SortKey, order: SortOrder): string {
  return encodeCursor({ sort, order, key: SORT_KEYS[sort].map((k) => row[k] as number) });
}

interface Where {
  clauses: string[];
  params: unknown[];
}

function inClause(col: string, n: number): string {
  return n === 1 ? `${col} = ?` : `${col} IN (${new Array(n).fill('?').join(', ')})`;
}

function policyMatch(policies: readonly string[]): Where {
  const ors: string[] = [];
  const params: unknown[] = [];
  for (const p of policies) {
    const i = p.lastIndexOf('/');
    if (i >= 0) {
      ors.push('(name = ? AND namespace = ?)');
      params.push(p.slice(i + 1), p.slice(0, i));
    } else {
      ors.push('name = ?');
      params.push(p);
    }
  }
  return { clauses: [ors.join(' OR ')], params };
}

type FilterName = 'status' | 'severity' | 'namespace' | 'rule' | 'source' | 'agent' | 'policy' | 'time' | 'q';

/**
 * Conditions for a filter, each written so that SQLite cannot use an index for
 * it (+col): the plan is chosen here, not by the planner. `skip` leaves out the
 * filter a driving set already applies; `t` prefixes columns with a table alias.
 */
function where(f: AlertFilter, skip?: FilterName, t = '', rangeOnSortIndex = false, ftsMinId?: number, countTextReads = false): Where {
  // Time bounds the last_seen index: usable when that index drives, else checked per row.
  const time = rangeOnSortIndex ? '' : '+';
  const w: Where = { clauses: [], params: [] };
  const add = (name: FilterName, col: string, vals: readonly unknown[] | undefined) => {
    if (!vals?.length || name === skip) return;
    w.clauses.push(inClause(`+${t}${col}`, vals.length));
    w.params.push(...vals);
  };
  add('status', 'status', f.status);
  add(
    'severity',
    'severity_rank',
    f.severity?.map((s) => SEVERITY_RANK[s]),
  );
  add('namespace', 'namespace', f.namespace);
  add('rule', 'rule', f.rule);
  add('source', 'source', f.source);
  add('agent', 'agent', f.agent);
  if (f.policy?.length && skip !== 'policy') {
    const m = policyMatch(f.policy);
    w.clauses.push(`+${t}id IN (SELECT alert_id FROM alert_policies WHERE ${m.clauses[0]})`);
    w.params.push(...m.params);
  }
  if (f.since !== undefined && skip !== 'time') {
    w.clauses.push(`${time}${t}last_seen >= ?`);
    w.params.push(f.since);
  }
  if (f.until !== undefined && skip !== 'time') {
    w.clauses.push(`${time}${t}last_seen <= ?`);
    w.params.push(f.until);
  }
  const terms = f.q && skip !== 'q' ? searchTerms(f.q) : undefined;
  // A lower rowid bound lets FTS5 skip most of a common word's matches (see visitedMinIdSql).
  for (const term of terms?.fts ?? []) {
    const m = termSql(term, ftsMinId);
    w.clauses.push(`+${t}id IN (${m.sql})`);
    w.params.push(...m.params);
  }
  // After the indexed words, so SQLite reads an alert's text only for alerts that have them.
  // Also when the search drives (skip): the driver looks up only the words.
  const literals = f.q ? (searchTerms(f.q)?.literal ?? []) : [];
  // Counted where the text is read: only alerts the other filters kept get here.
  if (countTextReads && literals.length) w.clauses.push(`${SCAN_FN}(${t ? `${t}id` : 'alerts.id'})`);
  for (const lit of literals) {
    const m = literalSql(lit, t ? `${t}id` : 'alerts.id');
    w.clauses.push(m.sql);
    w.params.push(...m.params);
  }
  return w;
}

export interface Sql {
  sql: string;
  params: unknown[];
}

/** A filter that can produce its matching ids from an index, to drive a query when few match. */
export interface Driver extends Sql {
  name: FilterName;
}

/** Id sets the query could start from; the store sizes them and picks the smallest if it is small. */
export function drivers(f: AlertFilter): Driver[] {
  const out: Driver[] = [];
  const idx = (name: FilterName, index: string, col: string, vals: readonly unknown[] | undefined) => {
    if (vals?.length) out.push({ name, sql: `SELECT id FROM alerts INDEXED BY ${index} WHERE ${inClause(col, vals.length)}`, params: [...vals] });
  };
  idx('status', 'alerts_status', 'status', f.status);
  idx(
    'severity',
    'alerts_severity',
    'severity_rank',
    f.severity?.map((s) => SEVERITY_RANK[s]),
  );
  idx('namespace', 'alerts_namespace', 'namespace', f.namespace);
  idx('rule', 'alerts_rule', 'rule', f.rule);
  if (f.policy?.length) {
    const m = policyMatch(f.policy);
    // DISTINCT: an alert may match more than one of the policies asked for.
    out.push({
      name: 'policy',
      sql: `SELECT DISTINCT alert_id AS id FROM alert_policies INDEXED BY alert_policies_name WHERE ${m.clauses[0]}`,
      params: m.params,
    });
  }
  if (f.since !== undefined || f.until !== undefined) {
    out.push({
      name: 'time',
      sql: 'SELECT id FROM alerts INDEXED BY alerts_last_seen WHERE last_seen BETWEEN ? AND ?',
      params: [f.since ?? 0, f.until ?? Number.MAX_SAFE_INTEGER],
    });
  }
  // Literal words have no index: they are checked per row (where()), never drive.
  const terms = f.q ? searchTerms(f.q)?.fts : undefined;
  if (terms?.length === 1) {
    // Each id once (the page joins them to their alerts): the main index's matches as they come, then
    // those only the added values have (an alert once, however many of its added values match). The sizing count stops in the first part for a common word.
    out.push({
      name: 'q',
      sql: `SELECT rowid AS id FROM alerts_fts WHERE alerts_fts MATCH ?
        UNION ALL SELECT DISTINCT ${ADDED_ALERT_ID} AS id FROM alerts_fts_added WHERE alerts_fts_added MATCH ? AND ${ADDED_ALERT_ID} NOT IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)`,
      params: [terms[0], terms[0], terms[0]],
    });
  } else if (terms?.length) {
    const parts = terms.map((term) => termSql(term));
    out.push({ name: 'q', sql: parts.map((m) => `SELECT id FROM (${m.sql})`).join(' INTERSECT '), params: parts.flatMap((m) => m.params) });
  }
  return out;
}

/** Counts a driver's ids up to cap + 1: enough to know whether it is small. */
export function sizeSql(d: Driver, cap: number): Sql {
  return { sql: `SELECT count(*) AS n FROM (${d.sql} LIMIT ?)`, params: [...d.params, cap + 1] };
}

function orderBy(sort: SortKey, order: SortOrder, t = ''): string {
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  return SORT_KEYS[sort].map((k) => `${t}${k} ${dir}`).join(', ');
}

function cursorClause(c: Cursor | undefined, w: Where, t = ''): void {
  if (!c) return;
  const keys = SORT_KEYS[c.sort].map((k) => `${t}${k}`);
  const op = c.order === 'desc' ? '<' : '>';
  w.clauses.push(keys.length === 1 ? `${keys[0]} ${op} ?` : `(${keys.join(', ')}) ${op} (${keys.map(() => '?').join(', ')})`);
  w.params.push(...c.key);
}

function whereSql(w: Where): string {
  return w.clauses.length ? ` WHERE ${w.clauses.join(' AND ')}` : '';
}

/** The SQL function the store registers to count and bound the rows a scan examines. */
export const SCAN_FN = 'verdict_scan';

export interface ListSql extends Sql {
  /** True when the query walks the sort index and checks filters per row (bounded by SCAN_FN). */
  scan: boolean;
}

/**
 * A page of alerts. With a driver (a filter known to match few alerts), its ids
 * are fetched and sorted; without one, the sort index is walked and every
 * filter checked per row, which stops after `limit` hits, or when the store's
 * scan budget runs out (a filter matching few of many alerts): the page is then
 * short and its cursor continues the walk.
 */
export function listSql(cols: string, q: ListQuery, driver?: Driver, ftsMinId?: number): ListSql {
  const sort = q.sort ?? 'last_seen';
  const order = q.order ?? 'desc';
  const cursor = q.cursor ? decodeCursor(q.cursor, sort, order) : undefined;
  if (driver) {
    // CROSS JOIN fixes the order: the driver's ids first, then one row lookup each
    // (twice as fast as `id IN (...)`, which builds a temporary list first).
    const w = where(q, driver.name, 'a.');
    cursorClause(cursor, w, 'a.');
    const acols = cols
      .split(', ')
      .map((c) => `a.${c}`)
      .join(', ');
    return {
      sql: `SELECT ${acols} FROM (${driver.sql}) d CROSS JOIN alerts a ON a.id = d.id${whereSql(w)} ORDER BY ${orderBy(sort, order, 'a.')} LIMIT ?`,
      params: [...driver.params, ...w.params, q.limit],
      scan: false,
    };
  }
  const w = where(q, undefined, '', sort === 'last_seen', ftsMinId);
  // First among the per-row checks, so it sees every row the walk reaches.
  w.clauses.unshift(`${SCAN_FN}(${SORT_KEYS[sort].join(', ')})`);
  cursorClause(cursor, w);
  const index = SORT_INDEX[sort];
  return {
    sql: `SELECT ${cols} FROM alerts ${index ? `INDEXED BY ${index}` : 'NOT INDEXED'}${whereSql(w)} ORDER BY ${orderBy(sort, order)} LIMIT ?`,
    params: [...w.params, q.limit],
    scan: true,
  };
}

/**
 * The smallest id among the rows a scan can reach: the first `budget` entries
 * of the sort index after the cursor (and in the time range, for last_seen).
 * Matches of a search below it cannot be on the page, so the search needs
 * only the matches above it; with recent alerts most active, that is few.
 */
export function visitedMinIdSql(q: ListQuery, budget: number): Sql {
  const sort = q.sort ?? 'last_seen';
  const order = q.order ?? 'desc';
  const cursor = q.cursor ? decodeCursor(q.cursor, sort, order) : undefined;
  const w = where({ since: q.since, until: q.until }, sort === 'last_seen' ? undefined : 'time', '', true);
  cursorClause(cursor, w);
  const index = SORT_INDEX[sort];
  return {
    sql: `SELECT min(id) AS m FROM (SELECT id FROM alerts ${index ? `INDEXED BY ${index}` : 'NOT INDEXED'}${whereSql(w)} ORDER BY ${orderBy(sort, order)} LIMIT ?)`,
    params: [...w.params, budget + 1],
  };
}

export function cursorFromKey(key: (number | string)[], sort: SortKey, order: SortOrder): string {
  return encodeCursor({ sort, order, key });
}

export const COUNT_BY = ['severity', 'source', 'rule', 'namespace', 'policy', 'status', 'agent'] as const;
export type CountBy = (typeof COUNT_BY)[number];

/**
 * Counts straight from the alerts, for filters the rollup does not keep. A search
 * for text with no letter or digit reads each remaining alert's text: SCAN_FN
 * counts those reads, so the store can bound them (Lists.counts).
 */
export function countsSql(by: CountBy, f: AlertFilter, limit: number): Sql {
  // Rule and policy are empty for alerts that have none; counting "none" helps nobody.
  // The time range may use the last_seen index and a search its full-text index;
  // other filters are checked per row (an equality index would make SQLite read
  // every row in index order just to skip a sort).
  const fts = (t: string) => (c: string) => c.replace(`+${t}id IN (SELECT rowid AS id FROM alerts_fts`, `${t}id IN (SELECT rowid AS id FROM alerts_fts`);
  if (by === 'policy') {
    const w = where(f, undefined, 'a.', true, undefined, true);
    w.clauses = w.clauses.map(fts('a.'));
    const sql = `SELECT CASE WHEN p.namespace = '' THEN p.name ELSE p.namespace || '/' || p.name END AS key, count(*) AS alerts, sum(a.count) AS events
      FROM alerts a CROSS JOIN alert_policies p ON p.alert_id = a.id${whereSql(w)}
      GROUP BY p.namespace, p.name ORDER BY alerts DESC, key LIMIT ?`;
    return { sql, params: [...w.params, limit] };
  }
  const w = where(f, undefined, '', true, undefined, true);
  w.clauses = w.clauses.map(fts(''));
  if (by === 'rule') w.clauses.push("rule != ''");
  // GROUP BY +col: grouping through the column's index would read every alert in
  // index order instead of only those the filters (a time window) select.
  const sql = `SELECT ${by} AS key, count(*) AS alerts, sum(count) AS events FROM alerts${whereSql(w)} GROUP BY +${by} ORDER BY alerts DESC, key LIMIT ?`;
  return { sql, params: [...w.params, limit] };
}

/**
 * Changes after a stream cursor, oldest first, for the filters that never change
 * on an alert. Walks the seq index and checks the filters per row; SCAN_FN sees
 * every row the walk reaches (its key is the seq), so the store can stop a walk
 * that finds few matches (a rare namespace, text with no index) and say where it got to.
 */
export function changesSql(cols: string, f: AlertFilter, afterSeq: number, limit: number): Sql {
  const w = where({ ...f, status: undefined, severity: undefined, until: undefined });
  w.clauses.unshift(`${SCAN_FN}(seq)`);
  w.clauses.unshift('seq > ?');
  w.params.unshift(afterSeq);
  return { sql: `SELECT ${cols} FROM alerts INDEXED BY alerts_seq${whereSql(w)} ORDER BY seq LIMIT ?`, params: [...w.params, limit] };
}

export function isSeverity(s: string): s is Severity {
  return (SEVERITIES as readonly string[]).includes(s);
}
