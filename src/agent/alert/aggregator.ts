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

// A group's full payload (with its samples) is written once when the group
// opens and again only while samples are still being collected; a repeat
// after that updates a small row (count, first/last seen, description). That
// keeps the cost of a flood of repeats to a few bytes per occurrence.
const MIGRATIONS = [
  `CREATE TABLE pending_alerts (
     fingerprint TEXT PRIMARY KEY,
     payload BLOB NOT NULL,
     closes_at INTEGER NOT NULL,
     count INTEGER NOT NULL,
     first_seen TEXT NOT NULL,
     last_seen TEXT NOT NULL,
     description TEXT NOT NULL
   )`,
];

const occurrences = new Counter({ name: 'verdict_agent_alert_occurrences_total', help: 'Alert occurrences produced by the sources, before de-duplication', labelNames: ['source'], registers: [registry] });
const emitted = new Counter({ name: 'verdict_agent_alerts_emitted_total', help: 'De-duplicated alerts handed to the spool', labelNames: ['source'], registers: [registry] });

interface Group {
  alert: AlertPayload;
  closesAt: number;
  /** The stored payload lacks samples added since it was written. */
  payloadStale: boolean;
  /** The group is not in the table yet. */
  isNew: boolean;
}

export interface AggregatorOptions {
  log: Logger;
  /** How often closed windows are moved to the spool. */
  tickMs?: number;
  now?: () => number;
}

export class AlertAggregator {
  private readonly groups = new Map<string, Group>();
  private readonly insert;
  private readonly writePayload;
  private readonly writeCounts;
  private readonly del;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: DB, private readonly outbox: Outbox, private readonly opts: AggregatorOptions) {
    migrate(db, 'pending_alerts', MIGRATIONS);
    this.insert = db.prepare('INSERT INTO pending_alerts (fingerprint, payload, closes_at, count, first_seen, last_seen, description) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.writePayload = db.prepare('UPDATE pending_alerts SET payload = ?, count = ?, first_seen = ?, last_seen = ?, description = ? WHERE fingerprint = ?');
    this.writeCounts = db.prepare('UPDATE pending_alerts SET count = ?, first_seen = ?, last_seen = ?, description = ? WHERE fingerprint = ?');
    this.del = db.prepare('DELETE FROM pending_alerts WHERE fingerprint = ?');
    const rows = db.prepare('SELECT payload, closes_at, count, first_seen, last_seen, description FROM pending_alerts').all() as
      { payload: Buffer; closes_at: number; count: number; first_seen: string; last_seen: string; description: string }[];
    for (const row of rows) {
      const alert = JSON.parse(row.payload.toString('utf8')) as AlertPayload;
      Object.assign(alert, { count: row.count, first_seen: row.first_seen, last_seen: row.last_seen, description: row.description });
      this.groups.set(alert.fingerprint, { alert, closesAt: row.closes_at, payloadStale: false, isNew: false });
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
    // Fold in memory first, so a batch with many repeats writes each group once.
    const touched = new Set<Group>();
    for (const a of alerts) {
      occurrences.inc({ source: a.source }, a.count);
      const g = this.groups.get(a.fingerprint);
      if (g) {
        if (mergeInto(g.alert, a)) g.payloadStale = true;
        touched.add(g);
      } else {
        const copy: AlertPayload = { ...a, samples: a.samples.slice(0, MAX_SAMPLES) };
        const group = { alert: copy, closesAt: now + windowMs, payloadStale: false, isNew: true };
        this.groups.set(a.fingerprint, group);
        touched.add(group);
      }
    }
    try {
      this.db.transaction(() => {
        for (const g of touched) {
          const a = g.alert;
          if (g.isNew) this.insert.run(a.fingerprint, Buffer.from(JSON.stringify(a)), g.closesAt, a.count, a.first_seen, a.last_seen, a.description);
          else if (g.payloadStale) this.writePayload.run(Buffer.from(JSON.stringify(a)), a.count, a.first_seen, a.last_seen, a.description, a.fingerprint);
          else this.writeCounts.run(a.count, a.first_seen, a.last_seen, a.description, a.fingerprint);
        }
      })();
    } catch (e) {
      // Nothing was stored: forget the in-memory folding so memory matches disk.
      this.reloadTouched(touched);
      throw e;
    }
    for (const g of touched) {
      g.isNew = false;
      g.payloadStale = false;
    }
  }

  private reloadTouched(touched: Set<Group>): void {
    const get = this.db.prepare('SELECT payload, count, first_seen, last_seen, description FROM pending_alerts WHERE fingerprint = ?');
    for (const g of touched) {
      const row = get.get(g.alert.fingerprint) as { payload: Buffer; count: number; first_seen: string; last_seen: string; description: string } | undefined;
      if (!row) {
        this.groups.delete(g.alert.fingerprint);
        continue;
      }
      g.alert = Object.assign(JSON.parse(row.payload.toString('utf8')) as AlertPayload, { count: row.count, first_seen: row.first_seen, last_seen: row.last_seen, description: row.description });
      g.isNew = false;
      g.payloadStale = false;
    }
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

/** Folds a repeat into a group; returns true when samples were added. */
function mergeInto(into: AlertPayload, a: AlertPayload): boolean {
  into.count += a.count;
  if (a.first_seen < into.first_seen) into.first_seen = a.first_seen;
  if (a.last_seen > into.last_seen) {
    into.last_seen = a.last_seen;
    // The latest occurrence describes the current state best (e.g. a new output text).
    into.description = a.description;
  }
  let grew = false;
  for (const s of a.samples) {
    if (into.samples.length >= MAX_SAMPLES) break;
    into.samples.push(s);
    grew = true;
  }
  return grew;
}
