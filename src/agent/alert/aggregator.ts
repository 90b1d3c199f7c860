import { Counter } from 'prom-client';
import { MAX_SAMPLES, type AlertPayload } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import type { Outbox } from '../spool/outbox.js';

// Folds repeats of the same fingerprint inside a window into one alert with a
// count and first/last seen, before the tunnel, so a noisy rule or a SYN
// retransmit storm cannot flood the server. Pending groups live in SQLite: an
// occurrence is durable once add() returns, and a restart flushes what a crash
// left behind instead of losing it.

const MIGRATIONS = [
  `CREATE TABLE pending_alerts (
     fingerprint TEXT PRIMARY KEY,
     payload BLOB NOT NULL,
     closes_at INTEGER NOT NULL
   )`,
];

const occurrences = new Counter({ name: 'verdict_agent_alert_occurrences_total', help: 'Alert occurrences produced by the sources, before de-duplication', labelNames: ['source'], registers: [registry] });
const emitted = new Counter({ name: 'verdict_agent_alerts_emitted_total', help: 'De-duplicated alerts handed to the spool', labelNames: ['source'], registers: [registry] });

interface Group {
  alert: AlertPayload;
  closesAt: number;
}

export interface AggregatorOptions {
  log: Logger;
  /** How often closed windows are moved to the spool. */
  tickMs?: number;
  now?: () => number;
}

export class AlertAggregator {
  private readonly groups = new Map<string, Group>();
  private readonly upsert;
  private readonly del;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: DB, private readonly outbox: Outbox, private readonly opts: AggregatorOptions) {
    migrate(db, 'pending_alerts', MIGRATIONS);
    this.upsert = db.prepare('INSERT INTO pending_alerts (fingerprint, payload, closes_at) VALUES (?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET payload = excluded.payload');
    this.del = db.prepare('DELETE FROM pending_alerts WHERE fingerprint = ?');
    for (const row of db.prepare('SELECT fingerprint, payload, closes_at FROM pending_alerts').all() as { fingerprint: string; payload: Buffer; closes_at: number }[]) {
      this.groups.set(row.fingerprint, { alert: JSON.parse(row.payload.toString('utf8')) as AlertPayload, closesAt: row.closes_at });
    }
    if (this.groups.size) opts.log.info({ pending: this.groups.size }, 'Resuming de-duplication of alerts left pending by the previous run');
  }

  /**
   * Adds occurrences in one transaction; durable when it returns. A new
   * fingerprint opens a window of windowMs; repeats inside it fold into it.
   */
  add(alerts: readonly AlertPayload[], windowMs: number): void {
    if (alerts.length === 0) return;
    const now = (this.opts.now ?? Date.now)();
    if (windowMs <= 0) {
      this.outbox.add(alerts);
      for (const a of alerts) {
        occurrences.inc({ source: a.source }, a.count);
        emitted.inc({ source: a.source });
      }
      return;
    }
    const tx = this.db.transaction(() => {
      for (const a of alerts) {
        occurrences.inc({ source: a.source }, a.count);
        const g = this.groups.get(a.fingerprint);
        if (g) {
          mergeInto(g.alert, a);
          this.upsert.run(a.fingerprint, Buffer.from(JSON.stringify(g.alert)), g.closesAt);
        } else {
          const copy: AlertPayload = { ...a, samples: a.samples.slice(0, MAX_SAMPLES) };
          this.groups.set(a.fingerprint, { alert: copy, closesAt: now + windowMs });
          this.upsert.run(a.fingerprint, Buffer.from(JSON.stringify(copy)), now + windowMs);
        }
      }
    });
    tx();
  }

  /** Moves groups whose window has closed (all of them with force) to the spool. */
  flush(force = false): number {
    const now = (this.opts.now ?? Date.now)();
    const due: Group[] = [];
    for (const g of this.groups.values()) {
      if (force || now >= g.closesAt) due.push(g);
    }
    if (due.length === 0) return 0;
    const tx = this.db.transaction(() => {
      this.outbox.add(due.map((g) => g.alert));
      for (const g of due) this.del.run(g.alert.fingerprint);
    });
    tx();
    for (const g of due) {
      this.groups.delete(g.alert.fingerprint);
      emitted.inc({ source: g.alert.source });
    }
    return due.length;
  }

  start(): void {
    if (this.timer) return;
    const tick = this.opts.tickMs ?? 100;
    this.timer = setInterval(() => {
      try {
        this.flush();
      } catch (err) {
        this.opts.log.error({ error: (err as Error).message }, 'Failed to move de-duplicated alerts to the spool; will retry');
      }
    }, tick);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get pending(): number {
    return this.groups.size;
  }
}

function mergeInto(into: AlertPayload, a: AlertPayload): void {
  into.count += a.count;
  if (a.first_seen < into.first_seen) into.first_seen = a.first_seen;
  if (a.last_seen > into.last_seen) {
    into.last_seen = a.last_seen;
    // The latest occurrence describes the current state best (e.g. a new output text).
    into.description = a.description;
  }
  for (const s of a.samples) {
    if (into.samples.length >= MAX_SAMPLES) break;
    into.samples.push(s);
  }
}
