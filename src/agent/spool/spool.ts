import { uuid7 } from '../../shared/ids/uuid7.js';
import { Counter, Gauge } from 'prom-client';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { VerdictError, isVerdictError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';

// The durable spool between the alert stage and the tunnel. An alert is written
// here before anything tries to send it and deleted only after the server has
// acknowledged the batch that carried it, so a crash or a cut connection can
// delay an alert but never lose it.
//
// It is bounded by --spool-max-bytes, and a full spool is handled one of two
// ways, chosen by the caller of add():
// - 'drop' (Cilium: Hubble Relay keeps no backlog to come back to): an alert
//   that does not fit is dropped, counted and warned about.
// - 'refuse' (Falco, whose events were answered or read already and can wait
//   where they are stored): while the spool is full the whole write throws
//   SpoolFullError, and the source keeps its events and tries again when
//   onRoom() fires. A write made while the spool is not full is taken whole,
//   even if it goes past the bound: a write that would never fit whole (more
//   alerts than the bound holds, however empty the spool) must not hold its
//   source up for ever.
// The spool is full from when it reaches the bound, or drops an alert that
// does not fit, until acknowledgements bring it under 90% of it, so that
// sources pause and resume in episodes rather than at every acknowledged
// batch; 'drop' drops meanwhile too, so that every source waits for the same
// room.

const MIGRATIONS = [
  `CREATE TABLE outbox (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     -- Not indexed: ids are random and only the server looks them up (to de-duplicate).
     id TEXT NOT NULL,
     payload BLOB NOT NULL,
     bytes INTEGER NOT NULL,
     created_at INTEGER NOT NULL
   )`,
];

export interface OutboxRow {
  seq: number;
  id: string;
  payload: Buffer;
}

const spoolAlerts = new Gauge({
  name: 'verdict_agent_spool_alerts',
  help: 'Alerts waiting in the spool for the server to acknowledge them',
  registers: [registry],
});
const spoolBytes = new Gauge({ name: 'verdict_agent_spool_bytes', help: 'Bytes of alert payloads waiting in the spool', registers: [registry] });
const spoolDropped = new Counter({ name: 'verdict_agent_spool_dropped_total', help: 'Alerts dropped because the spool was full', registers: [registry] });
const spoolFull = new Gauge({
  name: 'verdict_agent_spool_full',
  help: 'Whether the spool is full (1): sources that wait (Falco) are refused until it is under 90% of --spool-max-bytes',
  registers: [registry],
});

/** What add() does with alerts when the spool is full (see the top of this file). */
export type WhenFull = 'drop' | 'refuse';

export const SPOOL_FULL_MESSAGE =
  "the agent's alert spool is full: the server has not acknowledged the alerts queued in it; check the agent's connection to the server, or raise --spool-max-bytes";

/** Thrown by add(alerts, 'refuse') while the spool is full: nothing of the write was stored. */
export class SpoolFullError extends VerdictError {
  constructor(message = SPOOL_FULL_MESSAGE) {
    super('VERDICT_OVERLOADED', message, { details: { reason: 'spool_full' } });
  }
}

/** Whether `e` is a refusal of a full spool (the caller keeps its events and tries again once there is room). */
export function isSpoolFull(e: unknown): boolean {
  return e instanceof SpoolFullError || (isVerdictError(e, 'VERDICT_OVERLOADED') && e.details?.reason === 'spool_full');
}

export interface SpoolOptions {
  /** Upper bound of payload bytes kept (see the top of this file). */
  maxBytes: number;
  log: Logger;
}

export class Spool {
  private readonly insert;
  private readonly selectAfter;
  private readonly deleteUpTo;
  private readonly deleteIds;
  private readonly addTx: (alerts: readonly AlertPayload[], now: number, whenFull: WhenFull) => number;
  private readonly removeTx: (rows: readonly OutboxRow[]) => void;
  private bytes: number;
  private count: number;
  private warnedFull = false;
  /** From reaching maxBytes until under 90% of it again. */
  private isFull = false;
  /** What verdict_agent_spool_full was last set to (undefined: not yet). */
  private fullGauge: boolean | undefined;
  private readonly roomListeners = new Set<() => void>();
  /** An alert that could never fit, whatever the server acknowledges: its own warning, at most once a minute. */
  private readonly tooLarge = new LogThrottle();
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly db: DB,
    private readonly opts: SpoolOptions,
  ) {
    migrate(db, 'outbox', MIGRATIONS);
    this.insert = db.prepare('INSERT INTO outbox (id, payload, bytes, created_at) VALUES (?, ?, ?, ?)');
    this.selectAfter = db.prepare('SELECT seq, id, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?');
    this.deleteUpTo = db.prepare('DELETE FROM outbox WHERE seq <= ?');
    this.deleteIds = db.prepare('DELETE FROM outbox WHERE seq BETWEEN ? AND ?');
    // Made once: better-sqlite3 builds its wrappers on every transaction() call,
    // a visible cost when every Falco event is its own alert.
    this.addTx = db.transaction((alerts: readonly AlertPayload[], now: number, whenFull: WhenFull) => this.insertAll(alerts, now, whenFull));
    this.removeTx = db.transaction((rows: readonly OutboxRow[]) => {
      // A batch is read as consecutive rows in seq order and new rows only get
      // higher seqs, so a range delete removes exactly the batch, in one statement.
      let first = rows[0]!.seq;
      let prev = first;
      for (let i = 1; i < rows.length; i++) {
        const seq = rows[i]!.seq;
        if (seq !== prev + 1) {
          this.deleteIds.run(first, prev);
          first = seq;
        }
        prev = seq;
      }
      this.deleteIds.run(first, prev);
    });
    const row = db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM outbox').get() as { n: number; b: number };
    this.count = row.n;
    this.bytes = row.b;
    this.checkFull();
    this.updateGauges();
  }

  /**
   * Adds alerts durably (one transaction). Returns how many were accepted;
   * with 'drop' the rest were dropped because the spool is full; with
   * 'refuse' it throws SpoolFullError instead while the spool is full. Call
   * inside a caller's transaction to make the hand-over atomic with the
   * caller's own writes (a throw then rolls them back too).
   */
  add(alerts: readonly AlertPayload[], whenFull: WhenFull = 'drop'): number {
    if (this.isFull && alerts.length > 0) {
      if (whenFull === 'refuse') throw new SpoolFullError();
      // Nothing would be written: no transaction, and no JSON per alert of a flood.
      for (let i = 0; i < alerts.length; i++) this.dropped();
      return 0;
    }
    const countBefore = this.count;
    const bytesBefore = this.bytes;
    const fullBefore = this.isFull;
    let accepted: number;
    try {
      accepted = this.addTx(alerts, Date.now(), whenFull);
    } catch (e) {
      // Rolled back (an alert that cannot be serialised, a full disk): nothing it counted was written.
      this.count = countBefore;
      this.bytes = bytesBefore;
      this.isFull = fullBefore;
      throw e;
    }
    if (accepted) {
      this.checkFull();
      this.updateGauges();
      for (const l of this.listeners) l();
    } else if (this.isFull !== fullBefore) {
      this.updateGauges();
    }
    return accepted;
  }

  private dropped(): void {
    spoolDropped.inc();
    if (!this.warnedFull) {
      this.warnedFull = true;
      this.opts.log.warn(
        { spool_bytes: this.bytes, max_bytes: this.opts.maxBytes },
        'Alert spool is full: new alerts are dropped until the server acknowledges queued ones; check the connection to the server or raise --spool-max-bytes',
      );
    }
  }

  private insertAll(alerts: readonly AlertPayload[], now: number, whenFull: WhenFull): number {
    let accepted = 0;
    for (const a of alerts) {
      // Dropped before it is serialised: a flood meeting a full spool costs no JSON per alert.
      if (whenFull === 'drop' && this.isFull) {
        this.dropped();
        continue;
      }
      const payload = Buffer.from(JSON.stringify(a));
      if (payload.length > this.opts.maxBytes) {
        spoolDropped.inc();
        const suppressed = this.tooLarge.pass();
        if (suppressed !== undefined) {
          this.opts.log.warn(
            { alert_bytes: payload.length, max_bytes: this.opts.maxBytes, source: a.source, rule: a.rule.slice(0, 200), suppressed },
            'Dropped an alert larger than --spool-max-bytes on its own; raise --spool-max-bytes above the alert size (or shorten what the source puts in the alert)',
          );
        }
        continue;
      }
      // While full, 'drop' drops too: the 90% hysteresis holds for every source, or
      // a source that drops would take every byte acknowledged and lock out those that wait.
      if (whenFull === 'drop' && this.bytes + payload.length > this.opts.maxBytes) {
        // A drop makes the spool full (refusing the sources that wait), unless it is under the
        // 90% mark, where no acknowledgement would come to make it not full again.
        if (this.bytes >= this.opts.maxBytes * 0.9) this.isFull = true;
        this.dropped();
        continue;
      }
      // Time-ordered ids (uuid7.ts) keep the server's event-id index append-only.
      this.insert.run(uuid7(), payload, payload.length, now);
      this.bytes += payload.length;
      this.count++;
      accepted++;
    }
    return accepted;
  }

  /**
   * Alerts after `afterSeq`, oldest first: at most `limit` of them, and no
   * more than `maxBytes` of ids and payloads together, except that the first
   * is always returned, whatever its size.
   */
  read(afterSeq: number, limit: number, maxBytes = Number.POSITIVE_INFINITY): OutboxRow[] {
    const rows: OutboxRow[] = [];
    let bytes = 0;
    // Row by row, so that rows past the budget (alerts of megabytes each) are never all held at once.
    for (const row of this.selectAfter.iterate(afterSeq, limit) as IterableIterator<OutboxRow>) {
      bytes += row.id.length + row.payload.length;
      if (bytes > maxBytes && rows.length > 0) break;
      rows.push(row);
    }
    return rows;
  }

  /** Removes acknowledged alerts. */
  remove(rows: readonly OutboxRow[]): void {
    if (rows.length === 0) return;
    this.removeTx(rows);
    for (const r of rows) this.bytes -= r.payload.length;
    this.count -= rows.length;
    // Rows another process wrote (a tool, a test) are sent and removed without
    // having been counted here: count again rather than go below zero.
    if (this.bytes < 0 || this.count < 0) this.recount();
    if (this.bytes < this.opts.maxBytes * 0.9) this.warnedFull = false;
    this.checkFull();
    this.updateGauges();
  }

  /** Removes everything up to and including seq (used by tests and tools). */
  removeUpTo(seq: number): void {
    this.deleteUpTo.run(seq);
    this.recount();
    this.checkFull();
    this.updateGauges();
  }

  /**
   * Counts the rows again. For a caller whose own transaction rolled back
   * after add() returned inside it: the rows add() counted were never committed.
   */
  resync(): void {
    this.recount();
    this.checkFull();
    this.updateGauges();
  }

  /**
   * Whether the spool is full: from when it reaches --spool-max-bytes until
   * it is under 90% of it again. add(alerts, 'refuse') throws meanwhile.
   */
  get full(): boolean {
    return this.isFull;
  }

  /** Called when a full spool has room again (see full). */
  onRoom(listener: () => void): () => void {
    this.roomListeners.add(listener);
    return () => this.roomListeners.delete(listener);
  }

  private checkFull(): void {
    if (!this.isFull && this.bytes >= this.opts.maxBytes) {
      this.isFull = true;
    } else if (this.isFull && this.bytes < this.opts.maxBytes * 0.9) {
      this.isFull = false;
      for (const l of this.roomListeners) l();
    }
  }

  private recount(): void {
    const row = this.db.prepare('SELECT count(*) AS n, coalesce(sum(bytes), 0) AS b FROM outbox').get() as { n: number; b: number };
    this.count = row.n;
    this.bytes = row.b;
  }

  get size(): number {
    return this.count;
  }

  /** Called after alerts are added, so the sender wakes without polling. */
  onAdded(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private updateGauges(): void {
    spoolAlerts.set(this.count);
    spoolBytes.set(this.bytes);
    // Set on change only: updateGauges runs for every write Cilium makes.
    if (this.isFull !== this.fullGauge) {
      this.fullGauge = this.isFull;
      spoolFull.set(this.isFull ? 1 : 0);
    }
  }
}
