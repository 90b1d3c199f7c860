import type { Statement } from 'better-sqlite3';
import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import { STATUSES, type AlertFilter, type CountBy } from './alert-query.js';
import type { AlertRow, CountRow } from './types.js';

// Alerts and occurrences per status and dimension value, kept in step by
// ingest, triage and purge, so dashboard counts and the store's size cost the
// same at any size.

type RollupFields = Pick<AlertRow, 'severity' | 'source' | 'namespace' | 'rule' | 'agent' | 'status' | 'count'>;

/** Key lists handed out, by their joined keys, so alerts that count in the same rows share one list. */
const KEY_LISTS_MAX = 10_000;
const keyLists = new Map<string, readonly string[]>();

/**
 * The rollup rows (dimension, value, status) an alert counts in. Alerts alike
 * get the same list (the same object), so a batch adds each distinct list
 * once rather than each of its keys once an alert.
 */
export function rollupKeys(r: RollupFields, policies: readonly PolicyRef[]): readonly string[] {
  const k = (dim: string, key: string) => `${dim}\u0000${key}\u0000${r.status}`;
  const keys = [k('severity', r.severity), k('source', r.source), k('namespace', r.namespace), k('agent', r.agent)];
  if (r.rule) keys.push(k('rule', r.rule));
  for (const p of policies) keys.push(k('policy', p.namespace ? `${p.namespace}/${p.name}` : p.name));
  // JSON, not a join: a value holding the separator must not make two lists one.
  const joined = JSON.stringify(keys);
  const known = keyLists.get(joined);
  if (known) return known;
  if (keyLists.size >= KEY_LISTS_MAX) keyLists.clear();
  keyLists.set(joined, keys);
  return keys;
}

/** Changes to the rollup gathered over a transaction and written once at its end. */
export class RollupDelta {
  /** By key list (rollupKeys' shared lists): one map operation an alert, not one a key. */
  private readonly d = new Map<readonly string[], [number, number]>();

  addKeys(keys: readonly string[], alerts: number, events: number): void {
    const v = this.d.get(keys);
    if (v) {
      v[0] += alerts;
      v[1] += events;
    } else {
      this.d.set(keys, [alerts, events]);
    }
  }

  add(sign: 1 | -1, r: RollupFields, policies: readonly PolicyRef[]): void {
    this.addKeys(rollupKeys(r, policies), sign, sign * r.count);
  }

  /** Writes what was gathered, once per transaction. */
  writeTo(rollups: Rollups): void {
    const byKey = new Map<string, [number, number]>();
    for (const [keys, [alerts, events]] of this.d) {
      for (const k of keys) {
        const v = byKey.get(k);
        if (v) {
          v[0] += alerts;
          v[1] += events;
        } else {
          byKey.set(k, [alerts, events]);
        }
      }
    }
    for (const [k, [alerts, events]] of byKey) {
      if (alerts === 0 && events === 0) continue;
      const [dim, key, status] = k.split('\u0000');
      rollups.put.run(dim, key, status, alerts, events);
    }
    this.d.clear();
  }
}

export class Rollups {
  readonly put: Statement<unknown[]>;
  private readonly s;

  constructor(db: DB) {
    this.put = db.prepare<unknown[]>(`INSERT INTO alert_rollup (dim, key, status, alerts, events) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (dim, key, status) DO UPDATE SET alerts = alerts + excluded.alerts, events = events + excluded.events`);
    this.s = {
      counts:
        db.prepare(`SELECT key, sum(alerts) AS alerts, sum(events) AS events FROM alert_rollup WHERE dim = ? AND status IN (SELECT value FROM json_each(?))
        GROUP BY key HAVING sum(alerts) > 0 ORDER BY alerts DESC, key LIMIT ?`),
      byStatus:
        db.prepare(`SELECT status AS key, sum(alerts) AS alerts, sum(events) AS events FROM alert_rollup WHERE dim = 'source' AND status IN (SELECT value FROM json_each(?))
        GROUP BY status HAVING sum(alerts) > 0 ORDER BY alerts DESC, key LIMIT ?`),
      tidy: db.prepare('DELETE FROM alert_rollup WHERE alerts <= 0'),
      countAlerts: db.prepare("SELECT coalesce(sum(alerts), 0) AS n FROM alert_rollup WHERE dim = 'source'"),
    };
  }

  /** True when the filter has nothing the rollup does not keep (only a status). */
  static answers(f: AlertFilter): boolean {
    return Object.entries(f).every(([k, v]) => k === 'status' || v === undefined || (Array.isArray(v) && v.length === 0));
  }

  counts(by: CountBy, f: AlertFilter, limit: number): CountRow[] {
    const statuses = JSON.stringify(f.status?.length ? f.status : STATUSES);
    if (by === 'status') return this.s.byStatus.all(statuses, limit) as CountRow[];
    return this.s.counts.all(by, statuses, limit) as CountRow[];
  }

  /** Alerts in the store, at any size in constant time. */
  alerts(): number {
    return (this.s.countAlerts.get() as { n: number }).n;
  }

  /** Drops rows of values no alert has any more. */
  tidy(): void {
    this.s.tidy.run();
  }
}
