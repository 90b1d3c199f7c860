import { SEVERITIES, SEVERITY_RANK, type Severity } from '../../shared/alert/payload.js';

// Turns feed filters into SQL that stays an index range scan on a large table.
// SQLite's planner, left alone, happily picks an equality index and then sorts a
// million rows for a 50-row page; here each query names the index that drives it
// (the others are disabled with a unary +).

export const STATUSES = ['triggered', 'acknowledged', 'resolved', 'ignored'] as const;
export type AlertStatus = (typeof STATUSES)[number];

export const SORTS = ['last_seen', 'first_seen', 'count', 'severity'] as const;
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
  /** Alerts active in [since, until]: last seen at or after since, first seen at or before until (unix ms). */
  since?: number;
  until?: number;
  /** Full-text search; see toFtsQuery. */
  q?: string;
}

export interface ListQuery extends AlertFilter {
  sort?: SortKey;
  order?: SortOrder;
  limit: number;
  cursor?: string;
}

/** A mistake in a query the caller made; the feed answers 400 with the message. */
export class QueryError extends Error {
  readonly statusCode = 400;
  readonly code = 'bad_request';
}

const SORT_KEYS: Record<SortKey, readonly string[]> = {
  last_seen: ['last_seen', 'id'],
  first_seen: ['first_seen', 'id'],
  count: ['count', 'id'],
  severity: ['severity_rank', 'last_seen', 'id'],
};

/**
 * Makes FTS5 syntax out of what people type. Each word becomes a quoted phrase,
 * so a hyphen, dot or colon inside it is a token separator, not an operator:
 * `payments-api` finds "payments-api" and does not mean "payments NOT api".
 * "Quoted text" is one phrase. Words are AND-ed; the last is a prefix so the
 * page can search as people type. Returns undefined when nothing is searchable.
 */
export function toFtsQuery(q: string): string | undefined {
  const terms: string[] = [];
  const re = /"([^"]*)"?|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(q)) && terms.length < 16) {
    const t = (m[1] ?? m[2] ?? '').replaceAll('"', ' ');
    if (/[\p{L}\p{N}]/u.test(t)) terms.push(`"${t}"`);
  }
  if (!terms.length) return undefined;
  terms[terms.length - 1] += '*';
  return terms.join(' AND ');
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
    throw new QueryError('cursor is not one this server made; pass next_cursor from the previous page unchanged, or drop it to start over');
  }
  if (v[0] !== sort || v[1] !== order) {
    throw new QueryError(`cursor belongs to sort=${String(v[0])}&order=${String(v[1])}; keep the sort of the first page or drop the cursor`);
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

/** Columns with an index (col, last_seen, id); listed most selective first. */
const DRIVING = ['rule', 'namespace', 'severity', 'status'] as const;
type Driving = (typeof DRIVING)[number];

function column(field: Driving | 'source' | 'agent'): string {
  return field === 'severity' ? 'severity_rank' : field;
}

function valuesOf(f: AlertFilter, field: Driving | 'source' | 'agent'): unknown[] | undefined {
  const v = f[field];
  if (!v || v.length === 0) return undefined;
  return field === 'severity' ? (v as Severity[]).map((s) => SEVERITY_RANK[s]) : v;
}

function inClause(col: string, n: number): string {
  return n === 1 ? `${col} = ?` : `${col} IN (${new Array(n).fill('?').join(', ')})`;
}

/**
 * Conditions for a filter. `indexed` names the columns whose index may be used;
 * every other column is written as +col, which SQLite cannot use an index for.
 */
function where(f: AlertFilter, indexed: ReadonlySet<string>, fts: string | undefined, ftsDrives: boolean, t = ''): Where {
  const w: Where = { clauses: [], params: [] };
  const c = (col: string) => `${indexed.has(col) ? '' : '+'}${t}${col}`;
  for (const field of [...DRIVING, 'source', 'agent'] as const) {
    const vals = valuesOf(f, field);
    if (!vals) continue;
    w.clauses.push(inClause(c(column(field)), vals.length));
    w.params.push(...vals);
  }
  if (f.policy?.length) {
    const ors: string[] = [];
    for (const p of f.policy) {
      const i = p.lastIndexOf('/');
      if (i >= 0) {
        ors.push('(name = ? AND namespace = ?)');
        w.params.push(p.slice(i + 1), p.slice(0, i));
      } else {
        ors.push('name = ?');
        w.params.push(p);
      }
    }
    w.clauses.push(`+${t}id IN (SELECT alert_id FROM alert_policies WHERE ${ors.join(' OR ')})`);
  }
  if (f.since !== undefined) {
    w.clauses.push(`${c('last_seen')} >= ?`);
    w.params.push(f.since);
  }
  if (f.until !== undefined) {
    w.clauses.push(`+${t}first_seen <= ?`);
    w.params.push(f.until);
  }
  if (fts) {
    w.clauses.push(`${ftsDrives ? '' : '+'}${t}id IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)`);
    w.params.push(fts);
  }
  return w;
}

export interface Sql {
  sql: string;
  params: unknown[];
}

function orderBy(sort: SortKey, order: SortOrder, prefix = ''): string {
  const dir = order === 'desc' ? 'DESC' : 'ASC';
  return SORT_KEYS[sort].map((k) => `${prefix}${k} ${dir}`).join(', ');
}

function cursorClause(c: Cursor | undefined, w: Where): void {
  if (!c) return;
  const keys = SORT_KEYS[c.sort];
  w.clauses.push(`(${keys.join(', ')}) ${c.order === 'desc' ? '<' : '>'} (${keys.map(() => '?').join(', ')})`);
  w.params.push(...c.key);
}

function whereSql(w: Where): string {
  return w.clauses.length ? ` WHERE ${w.clauses.join(' AND ')}` : '';
}

/**
 * A page of alerts. `ftsSmall` says the full-text match set is small enough to
 * fetch whole and sort; otherwise the sort index drives and matches are probed.
 */
export function listSql(cols: string, q: ListQuery, ftsSmall: boolean): Sql {
  const sort = q.sort ?? 'last_seen';
  const order = q.order ?? 'desc';
  const cursor = q.cursor ? decodeCursor(q.cursor, sort, order) : undefined;
  const fts = q.q ? toFtsQuery(q.q) : undefined;
  const limit = q.limit;

  if (fts && ftsSmall) {
    // Few matches: take them all from the full-text index and sort those.
    const w = where(q, new Set(), undefined, false);
    cursorClause(cursor, w);
    w.clauses.unshift('id IN (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ?)');
    w.params.unshift(fts);
    return { sql: `SELECT ${cols} FROM alerts${whereSql(w)} ORDER BY ${orderBy(sort, order)} LIMIT ?`, params: [...w.params, limit] };
  }

  if (sort === 'last_seen') {
    // An equality filter on a column with a (col, last_seen, id) index drives:
    // one index range per value, merged. Few values only; many would be a scan anyway.
    let drive: Driving | undefined;
    for (const d of DRIVING) {
      const n = q[d]?.length ?? 0;
      if (n > 0 && n <= 6 && (!drive || n < (q[drive]?.length ?? 0))) drive = d;
    }
    if (drive) {
      const vals = valuesOf(q, drive)!;
      const col = column(drive);
      const branches: string[] = [];
      const params: unknown[] = [];
      for (const v of vals) {
        const w = where({ ...q, [drive]: undefined }, new Set(['last_seen']), fts, false);
        w.clauses.unshift(`${col} = ?`);
        w.params.unshift(v);
        cursorClause(cursor, w);
        branches.push(`SELECT * FROM (SELECT ${cols} FROM alerts INDEXED BY alerts_${drive}${whereSql(w)} ORDER BY ${orderBy(sort, order)} LIMIT ?)`);
        params.push(...w.params, limit);
      }
      if (branches.length === 1) return { sql: branches[0]!, params };
      return { sql: `${branches.join(' UNION ALL ')} ORDER BY ${orderBy(sort, order)} LIMIT ?`, params: [...params, limit] };
    }
  }

  const index = sort === 'severity' ? 'alerts_severity' : `alerts_${sort}`;
  const w = where(q, new Set(sort === 'last_seen' ? ['last_seen'] : sort === 'severity' ? ['severity_rank'] : []), fts, false);
  cursorClause(cursor, w);
  return { sql: `SELECT ${cols} FROM alerts INDEXED BY ${index}${whereSql(w)} ORDER BY ${orderBy(sort, order)} LIMIT ?`, params: [...w.params, limit] };
}

/** The full-text part alone, to size the match set before choosing a plan. */
export function ftsProbeSql(q: string, cap: number): Sql | undefined {
  const fts = toFtsQuery(q);
  return fts ? { sql: 'SELECT count(*) AS n FROM (SELECT rowid FROM alerts_fts WHERE alerts_fts MATCH ? LIMIT ?)', params: [fts, cap + 1] } : undefined;
}

export const COUNT_BY = ['severity', 'source', 'rule', 'namespace', 'policy', 'status', 'agent'] as const;
export type CountBy = (typeof COUNT_BY)[number];

export function countsSql(by: CountBy, f: AlertFilter, limit: number): Sql {
  const fts = f.q ? toFtsQuery(f.q) : undefined;
  // Here the planner may pick any index: no order to keep, and a narrow filter helps.
  const indexed = new Set(['status', 'severity_rank', 'namespace', 'rule', 'last_seen']);
  if (by === 'policy') {
    const w = where(f, indexed, fts, true, 'a.');
    const sql = `SELECT CASE WHEN p.namespace = '' THEN p.name ELSE p.namespace || '/' || p.name END AS key, count(*) AS alerts, sum(a.count) AS events
      FROM alert_policies p JOIN alerts a ON a.id = p.alert_id${whereSql(w)}
      GROUP BY p.namespace, p.name ORDER BY alerts DESC, key LIMIT ?`;
    return { sql, params: [...w.params, limit] };
  }
  const w = where(f, indexed, fts, true);
  const col = by === 'severity' ? 'severity' : by;
  return { sql: `SELECT ${col} AS key, count(*) AS alerts, sum(count) AS events FROM alerts${whereSql(w)} GROUP BY ${col} ORDER BY alerts DESC, key LIMIT ?`, params: [...w.params, limit] };
}

/** Changes after a stream cursor, oldest first, for the filters that never change on an alert. */
export function changesSql(cols: string, f: AlertFilter, afterSeq: number, limit: number): Sql {
  const fts = f.q ? toFtsQuery(f.q) : undefined;
  const w = where({ ...f, status: undefined, severity: undefined, until: undefined }, new Set(), fts, false);
  w.clauses.unshift('seq > ?');
  w.params.unshift(afterSeq);
  return { sql: `SELECT ${cols} FROM alerts INDEXED BY alerts_seq${whereSql(w)} ORDER BY seq LIMIT ?`, params: [...w.params, limit] };
}

export function isSeverity(s: string): s is Severity {
  return (SEVERITIES as readonly string[]).includes(s);
}
