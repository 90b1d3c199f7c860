import { Counter } from 'prom-client';
import { foldOccurrence } from '../../shared/alert/fold.js';
import { MAX_SAMPLES, type AlertPayload, type Severity } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import type { Spool } from '../spool/spool.js';

// Folds repeats of the same fingerprint inside a window into one alert with a
// count and first/last seen, before the tunnel, so a noisy rule or a SYN
// retransmit storm cannot flood the server. Pending groups live in SQLite: an
// occurrence is durable once add() returns, and a restart flushes what a crash
// left behind instead of losing it.
//
// A source that already stores its events durably (the Falco HTTP inbox) can
// stage() occurrences instead: they are folded in memory only and written with
// the next transaction of the aggregator (persist(), add(), flush()), in which
// the source's StagedWriter removes the events it stored, so that an event is
// counted exactly once whether the process dies before or after that
// transaction. Many events then cost one write per group instead of one per
// event.

// A group's payload is written once when the group opens; a repeat updates a
// small row in pending_alert_counts (count, first/last seen, description) and
// each of the first MAX_SAMPLES samples is a row of its own, serialised once
// when it joins the group. That keeps the cost of a flood of repeats to a few
// bytes per occurrence.
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
  // The counts moved out of the payload's row: updating them rewrote that row's
  // page (one row of several KB per page) for every repeat.
  `CREATE TABLE pending_alert_counts (
     fingerprint TEXT PRIMARY KEY,
     count INTEGER NOT NULL,
     first_seen TEXT NOT NULL,
     last_seen TEXT NOT NULL,
     description TEXT NOT NULL
   ) WITHOUT ROWID;
   INSERT INTO pending_alert_counts (fingerprint, count, first_seen, last_seen, description)
     SELECT fingerprint, count, first_seen, last_seen, description FROM pending_alerts;
   ALTER TABLE pending_alerts DROP COLUMN count;
   ALTER TABLE pending_alerts DROP COLUMN first_seen;
   ALTER TABLE pending_alerts DROP COLUMN last_seen;
   ALTER TABLE pending_alerts DROP COLUMN description;`,
  // Samples moved out of the payload too: a payload rewritten for each sample
  // added cost several KB of JSON per write. A group's payload (written once,
  // with the samples it had then) is followed by its sample rows in order,
  // each a JSON array of the samples added by one write, the first being
  // sample number n.
  `CREATE TABLE pending_alert_samples (
     fingerprint TEXT NOT NULL,
     n INTEGER NOT NULL,
     samples BLOB NOT NULL
   );
   CREATE INDEX pending_alert_samples_fingerprint ON pending_alert_samples (fingerprint, n);`,
  // A repeat may raise the severity and brings its own title (shared/alert/fold.ts);
  // NULL: the payload's. A later sample row may start at a place an earlier
  // one filled: the sample of an occurrence that raised the severity takes the
  // last place when all are taken, so what made the alert this severe is sent.
  `ALTER TABLE pending_alert_counts ADD COLUMN severity TEXT;
   ALTER TABLE pending_alert_counts ADD COLUMN title TEXT;`,
];

const occurrences = new Counter({ name: 'verdict_agent_alert_occurrences_total', help: 'Alert occurrences produced by the sources, before de-duplication', labelNames: ['source'], registers: [registry] });
const emitted = new Counter({ name: 'verdict_agent_alerts_emitted_total', help: 'De-duplicated alerts handed to the spool', labelNames: ['source'], registers: [registry] });

interface Group {
  alert: AlertPayload;
  closesAt: number;
  /** Until the group is in the tables: its payload (with the samples it opened with), serialised then. */
  payloadJson: Buffer | undefined;
  /** alert.samples from newFrom on are not written yet; newSamples are them serialised. */
  newFrom: number;
  newSamples: Buffer[];
  /** Holds staged occurrences that are not written yet. */
  staged: boolean;
}

interface StoredRow {
  fingerprint: string;
  payload: Buffer;
  closes_at: number;
  count: number;
  first_seen: string;
  last_seen: string;
  description: string;
  severity: Severity | null;
  title: string | null;
}

interface SampleRow {
  n: number;
  samples: Buffer;
}

/** A source whose staged occurrences become durable with the aggregator's transactions. */
export interface StagedWriter {
  /** Inside the transaction that writes what was staged: make the source's own records match (e.g. delete the stored events). */
  write(): void;
  /** That transaction committed. */
  committed(): void;
  /** That transaction rolled back: everything staged since the last commit was forgotten and must be staged again. */
  rolledBack(): void;
}

export interface AggregatorOptions {
  log: Logger;
  /** How often closed windows are moved to the spool. */
  tickMs?: number;
  now?: () => number;
}

export class AlertAggregator {
  private readonly groups = new Map<string, Group>();
  /** Groups changed in memory since their last write. */
  private readonly dirty = new Set<Group>();
  /** Staged occurrences without a window, for the spool as they are. */
  private direct: AlertPayload[] = [];
  private readonly writers = new Set<StagedWriter>();
  private stagedCount = 0;
  private readonly insertPayload;
  private readonly insertSample;
  private readonly selectSamples;
  private readonly delSamples;
  private readonly insertCounts;
  private readonly writeCounts;
  private readonly delPayload;
  private readonly delCounts;
  private readonly selectOne;
  /** Made once: better-sqlite3 builds four wrapper functions per db.transaction() call. */
  private readonly tx;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly db: DB, private readonly outbox: Spool, private readonly opts: AggregatorOptions) {
    migrate(db, 'pending_alerts', MIGRATIONS);
    this.insertPayload = db.prepare('INSERT INTO pending_alerts (fingerprint, payload, closes_at) VALUES (?, ?, ?)');
    this.insertSample = db.prepare('INSERT INTO pending_alert_samples (fingerprint, n, samples) VALUES (?, ?, ?)');
    this.selectSamples = db.prepare('SELECT n, samples FROM pending_alert_samples WHERE fingerprint = ? ORDER BY n, rowid');
    this.delSamples = db.prepare('DELETE FROM pending_alert_samples WHERE fingerprint = ?');
    this.insertCounts = db.prepare('INSERT INTO pending_alert_counts (fingerprint, count, first_seen, last_seen, description, severity, title) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.writeCounts = db.prepare('UPDATE pending_alert_counts SET count = ?, first_seen = ?, last_seen = ?, description = ?, severity = ?, title = ? WHERE fingerprint = ?');
    this.delPayload = db.prepare('DELETE FROM pending_alerts WHERE fingerprint = ?');
    this.delCounts = db.prepare('DELETE FROM pending_alert_counts WHERE fingerprint = ?');
    const select = 'SELECT p.fingerprint, p.payload, p.closes_at, c.count, c.first_seen, c.last_seen, c.description, c.severity, c.title FROM pending_alerts p JOIN pending_alert_counts c USING (fingerprint)';
    this.selectOne = db.prepare(`${select} WHERE p.fingerprint = ?`);
    this.tx = db.transaction((written: readonly Group[], direct: readonly AlertPayload[], body: (() => void) | undefined, all: boolean) => {
      for (const g of written) this.writeGroup(g);
      if (direct.length) this.outbox.add(direct);
      body?.();
      if (all) for (const w of this.writers) w.write();
    });
    const samples = new Map<string, SampleRow[]>();
    for (const r of db.prepare('SELECT fingerprint, n, samples FROM pending_alert_samples ORDER BY fingerprint, n, rowid').all() as (SampleRow & { fingerprint: string })[]) {
      let list = samples.get(r.fingerprint);
      if (!list) samples.set(r.fingerprint, (list = []));
      list.push(r);
    }
    for (const row of db.prepare(select).all() as StoredRow[]) {
      const alert = fromRow(row, samples.get(row.fingerprint) ?? []);
      this.groups.set(row.fingerprint, { alert, closesAt: row.closes_at, payloadJson: undefined, newFrom: alert.samples.length, newSamples: [], staged: false });
    }
    if (this.groups.size) opts.log.info({ pending: this.groups.size }, 'Resuming de-duplication of alerts left pending by the previous run');
  }

  /**
   * Adds occurrences in one transaction; durable when it returns. A new
   * fingerprint opens a window of windowMs; repeats inside it fold into it.
   * `inTx` runs inside that transaction (a source's own writes that must
   * commit or fail with the occurrences). Outside another transaction this
   * also writes whatever was staged.
   */
  add(alerts: readonly AlertPayload[], windowMs: number, inTx?: () => void): void {
    if (alerts.length === 0 && !inTx) return;
    countOccurrences(alerts);
    const touched = new Set<Group>();
    const direct = windowMs > 0 ? undefined : alerts;
    if (!direct) this.fold(alerts, windowMs, touched);
    // Nested in a caller's transaction (that may still roll back), only this
    // call's groups are written unless one of them holds staged occurrences.
    let all = !this.db.inTransaction;
    if (!all) for (const g of touched) if (g.staged) all = true;
    const groups = all ? this.dirty : touched;
    this.inTransaction(groups, all, () => {
      if (direct) this.outbox.add(direct);
      inTx?.();
    });
    if (direct) for (const a of direct) emitted.inc({ source: a.source });
  }

  /**
   * Folds occurrences in memory only; they become durable with the next
   * transaction, in which the attached StagedWriters record that. A source
   * stages only what it has already stored durably itself.
   */
  stage(alerts: readonly AlertPayload[], windowMs: number): void {
    if (alerts.length === 0) return;
    countOccurrences(alerts);
    this.stagedCount += alerts.length;
    if (windowMs > 0) this.fold(alerts, windowMs, undefined);
    else for (const a of alerts) this.direct.push(a);
  }

  /** Writes what was staged (and every other change kept in memory) in one transaction. */
  persist(): void {
    if (this.dirty.size === 0 && this.direct.length === 0 && this.writers.size === 0) return;
    this.inTransaction(this.dirty, true, undefined);
  }

  /** Occurrences staged since the last write. */
  get staged(): number {
    return this.stagedCount;
  }

  /** Registers a source that stages; returns the function that detaches it. */
  attach(writer: StagedWriter): () => void {
    this.writers.add(writer);
    return () => this.writers.delete(writer);
  }

  /** Moves groups whose window has closed (all of them with force) to the spool. */
  flush(force = false): number {
    const now = (this.opts.now ?? Date.now)();
    const due: Group[] = [];
    let stagedDue = false;
    for (const g of this.groups.values()) {
      if (force || now >= g.closesAt) {
        due.push(g);
        if (g.staged) stagedDue = true;
      }
    }
    if (force && (this.direct.length || this.dirty.size)) stagedDue = true;
    if (due.length === 0 && !stagedDue) return 0;
    const dueSet = new Set(due);
    // A closing group with staged occurrences goes to the spool together with
    // everything staged, so the source's stored events are released with it.
    const write = stagedDue ? [...this.dirty].filter((g) => !dueSet.has(g)) : [];
    this.inTransaction(write, stagedDue, () => {
      this.outbox.add(due.map((g) => g.alert));
      for (const g of due) {
        if (g.payloadJson) continue; // never written
        this.delPayload.run(g.alert.fingerprint);
        this.delCounts.run(g.alert.fingerprint);
        this.delSamples.run(g.alert.fingerprint);
      }
    }, due);
    for (const g of due) {
      this.groups.delete(g.alert.fingerprint);
      this.dirty.delete(g);
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

  private fold(alerts: readonly AlertPayload[], windowMs: number, touched: Set<Group> | undefined): void {
    const now = (this.opts.now ?? Date.now)();
    const staged = touched === undefined;
    for (const a of alerts) {
      let g = this.groups.get(a.fingerprint);
      if (g) {
        mergeInto(g, a);
      } else {
        const alert = { ...a, samples: a.samples.slice(0, MAX_SAMPLES) };
        // Serialised now, while the events arrive, rather than all at once in the next write.
        g = { alert, closesAt: now + windowMs, payloadJson: Buffer.from(JSON.stringify(alert)), newFrom: alert.samples.length, newSamples: [], staged: false };
        this.groups.set(a.fingerprint, g);
      }
      if (staged) g.staged = true;
      else touched.add(g);
      this.dirty.add(g);
    }
  }

  /**
   * Runs one transaction writing `groups` (and, with `all`, what was staged
   * and the writers' records) plus `body`; on failure memory is put back to
   * what is stored. `skip` are groups `body` removes.
   */
  private inTransaction(groups: Iterable<Group>, all: boolean, body: (() => void) | undefined, skip?: readonly Group[]): void {
    const written: Group[] = [];
    for (const g of groups) written.push(g);
    const direct = all ? this.direct : [];
    try {
      this.tx(written, direct, body, all);
    } catch (e) {
      // Nothing was stored: forget the in-memory folding so memory matches disk.
      this.reload([...written, ...(skip ?? [])], all);
      if (all) {
        this.direct = [];
        this.stagedCount = 0;
        for (const w of this.writers) w.rolledBack();
      }
      throw e;
    }
    for (const g of written) {
      g.payloadJson = undefined;
      g.newFrom = g.alert.samples.length;
      g.newSamples = [];
      g.staged = false;
      this.dirty.delete(g);
    }
    if (all) {
      for (const a of direct) emitted.inc({ source: a.source });
      this.direct = [];
      this.stagedCount = 0;
      for (const w of this.writers) w.committed();
    }
  }

  private writeGroup(g: Group): void {
    const a = g.alert;
    if (g.payloadJson) {
      this.insertPayload.run(a.fingerprint, g.payloadJson, g.closesAt);
      this.insertCounts.run(a.fingerprint, a.count, a.first_seen, a.last_seen, a.description, a.severity, a.title);
    } else {
      this.writeCounts.run(a.count, a.first_seen, a.last_seen, a.description, a.severity, a.title, a.fingerprint);
    }
    if (g.newSamples.length) this.insertSample.run(a.fingerprint, g.newFrom, jsonArray(g.newSamples));
  }

  /** Puts groups back to their stored state; with `all`, every group holding staged occurrences too. */
  private reload(groups: readonly Group[], all: boolean): void {
    const set = new Set(groups);
    if (all) for (const g of this.dirty) if (g.staged) set.add(g);
    for (const g of set) {
      const row = this.selectOne.get(g.alert.fingerprint) as StoredRow | undefined;
      this.dirty.delete(g);
      if (!row) {
        if (this.groups.get(g.alert.fingerprint) === g) this.groups.delete(g.alert.fingerprint);
        continue;
      }
      g.alert = fromRow(row, this.selectSamples.all(row.fingerprint) as SampleRow[]);
      g.closesAt = row.closes_at;
      g.payloadJson = undefined;
      g.newFrom = g.alert.samples.length;
      g.newSamples = [];
      g.staged = false;
      this.groups.set(row.fingerprint, g);
    }
  }
}

const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');

/** A JSON array of already serialised values. */
function jsonArray(items: readonly Buffer[]): Buffer {
  const parts: Buffer[] = [OPEN];
  items.forEach((b, i) => parts.push(...(i ? [COMMA, b] : [b])));
  parts.push(CLOSE);
  return Buffer.concat(parts);
}

/** A group as stored: its payload, then its sample rows in order (ordered by n and then as written), each filling places from n on. */
function fromRow(row: StoredRow, sampleRows: readonly SampleRow[]): AlertPayload {
  const alert = JSON.parse(row.payload.toString('utf8')) as AlertPayload;
  for (const r of sampleRows) {
    const list = JSON.parse(r.samples.toString('utf8')) as unknown[];
    for (let i = 0; i < list.length && r.n + i < MAX_SAMPLES && r.n + i <= alert.samples.length; i++) alert.samples[r.n + i] = list[i];
  }
  alert.count = row.count;
  alert.first_seen = row.first_seen;
  alert.last_seen = row.last_seen;
  alert.description = row.description;
  if (row.severity !== null) alert.severity = row.severity;
  if (row.title !== null) alert.title = row.title;
  return alert;
}

const occurrenceCounters = new Map<string, Counter.Internal>();

/** Counts occurrences per source with one counter update per source and batch. */
function countOccurrences(alerts: readonly AlertPayload[]): void {
  let source = '';
  let n = 0;
  for (const a of alerts) {
    if (a.source !== source) {
      if (n) bump(source, n);
      source = a.source;
      n = 0;
    }
    n += a.count;
  }
  if (n) bump(source, n);
}

function bump(source: string, n: number): void {
  let c = occurrenceCounters.get(source);
  if (!c) occurrenceCounters.set(source, (c = occurrences.labels(source)));
  c.inc(n);
}

/** Folds a repeat into a group by the shared rule; samples it adds are serialised for their rows. */
function mergeInto(g: Group, a: AlertPayload): void {
  const into = g.alert;
  const f = foldOccurrence(into, a);
  Object.assign(into, f.summary);
  const samples = into.samples;
  if (f.setsSeverity && samples.length >= MAX_SAMPLES && a.samples.length) {
    // What made the alert this severe must reach the server even when the
    // places are taken: it takes the last one.
    const last = MAX_SAMPLES - 1;
    samples[last] = a.samples[0];
    const json = Buffer.from(JSON.stringify(a.samples[0]));
    if (last >= g.newFrom) g.newSamples[last - g.newFrom] = json;
    else {
      g.newFrom = last;
      g.newSamples = [json];
    }
    return;
  }
  for (const s of a.samples) {
    if (samples.length >= MAX_SAMPLES) break;
    samples.push(s);
    g.newSamples.push(Buffer.from(JSON.stringify(s)));
  }
}
