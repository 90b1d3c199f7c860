import { Counter } from 'prom-client';
import { FOLD_SETS_SEVERITY, foldIn } from '../../shared/alert/fold.js';
import { MAX_SAMPLES, SEVERITY_RANK, type AlertPayload, type Severity } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import { SpoolFullError, type Spool, type WhenFull } from '../spool/spool.js';

// Folds repeats of the same fingerprint inside a window into one alert
// (shared/alert/fold.ts), before the tunnel, so a noisy rule or a SYN
// retransmit storm cannot flood the server, without holding back what is new:
// a security alert that waits for its window to close reaches people a window
// late.
//
// - What a write brings of a fingerprint that has no open group goes to the
//   spool in that write, and opens the fingerprint's group for a window as a
//   quiet group (one that holds nothing).
// - Repeats fold into the group. The first one into a quiet group starts it
//   afresh from its own payload (severity, title, samples): the alert already
//   sent must not lend its severity or samples to what comes after it.
// - When the window closes, a group holding repeats goes to the spool (its
//   count is theirs only, so the server's total stays exact) and reopens
//   quiet for another window: steady noise makes one alert per window. A quiet
//   group is dropped, so what comes after a quiet window is sent at once again.
//
// Pending groups live in SQLite and in memory alike, quiet ones too (count 0,
// no payload): an occurrence is durable once add() returns, and a restart
// resumes what a crash left behind instead of losing it or sending it twice.
//
// A source that already stores its events durably (the Falco HTTP inbox)
// stages occurrences instead (staging()): they are folded in memory, apart
// from the groups, until the source commits them, in one transaction with its
// own record of how far it got, so that an event is counted exactly once
// whether the process dies before or after that transaction. Many events then
// cost one write per group instead of one per event. Only the source's commit
// writes what it staged; the aggregator never calls back into a source.
//
// When the spool is full (spool.ts), a source chooses per write what happens
// to the alerts the write would spool: dropped by the spool ('drop', the
// default), or the whole write refused ('refuse': it throws SpoolFullError
// and nothing of it is stored, so the source keeps its events and writes them
// again once onSpoolRoom fires). Repeats folded into a group spool nothing
// and are written either way. A window that closes while the spool is full
// keeps its group open, repeats and all, until there is room: what the group
// holds was stored already, whatever its source.

// A group's payload is written once, by the first repeat since the group was
// last sent (an alert sent at once is written to the spool only, its group as
// a quiet row); a repeat updates a small row in pending_alert_counts (count,
// first/last seen, severity, title, description, and labels when a rise moved
// them) and each of the first MAX_SAMPLES samples is a
// row of its own, serialised once when it joins the group. That keeps the cost
// of a flood of repeats to a few bytes per occurrence.
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
  // The window a group reopens for, quiet, after it is sent; 0 (a group stored
  // before groups reopened): it closes for good.
  `ALTER TABLE pending_alerts ADD COLUMN window_ms INTEGER NOT NULL DEFAULT 0;`,
  // Labels move with the title when a repeat raises the severity (shared/alert/fold.ts), which is
  // rare: written then only, as JSON; NULL: the payload's.
  `ALTER TABLE pending_alert_counts ADD COLUMN labels TEXT;`,
];

/** A quiet group's payload: it has none (its count is 0). */
const NO_PAYLOAD = Buffer.alloc(0);

const occurrences = new Counter({
  name: 'verdict_agent_alert_occurrences_total',
  help: 'Alert occurrences produced by the sources, before de-duplication',
  labelNames: ['source'],
  registers: [registry],
});
const emitted = new Counter({
  name: 'verdict_agent_alerts_emitted_total',
  help: 'De-duplicated alerts handed to the spool',
  labelNames: ['source'],
  registers: [registry],
});

/** An open group, as stored. */
interface Group {
  fingerprint: string;
  /** The occurrences folded since the group was last sent; undefined: none, the group is quiet. */
  alert: AlertPayload | undefined;
  closesAt: number;
  /** The window the group reopens for, quiet, once sent; 0: it closes for good. */
  windowMs: number;
  /** Opened by the write under way: its alert goes to the spool in that write, and it is stored quiet. */
  sendNow: boolean;
  /** Until the group's payload is in the tables: that payload (with the samples it started with), serialised then. */
  payloadJson: Buffer | undefined;
  /** alert.samples from here on are not written yet. */
  newFrom: number;
  /** A fold moved alert.labels since they were last written (with the payload or on their own). */
  labelsMoved: boolean;
}

/** Occurrences of one fingerprint staged and not committed yet, folded. */
interface Staged {
  alert: AlertPayload;
  /** Where in alert.samples the sample of the occurrence that set its severity is. */
  setter: number;
  windowMs: number;
}

interface StoredRow {
  fingerprint: string;
  payload: Buffer;
  closes_at: number;
  window_ms: number;
  count: number;
  first_seen: string;
  last_seen: string;
  description: string;
  severity: Severity | null;
  title: string | null;
  labels: string | null;
}

interface SampleRow {
  n: number;
  samples: Buffer;
}

export interface AggregatorOptions {
  log: Logger;
  /** How often closed windows are moved to the spool. */
  tickMs?: number;
  now?: () => number;
}

export class AlertAggregator {
  private readonly groups = new Map<string, Group>();
  private readonly stagings = new Set<Staging>();
  private readonly putPayload;
  private readonly insertSample;
  private readonly selectSamples;
  private readonly delSamples;
  private readonly putCounts;
  private readonly writeCounts;
  private readonly writeLabels;
  private readonly delPayload;
  private readonly delCounts;
  private readonly selectOne;
  /** Made once: better-sqlite3 builds four wrapper functions per db.transaction() call. */
  private readonly tx;
  private timer: NodeJS.Timeout | undefined;
  /** Set when the spool added rows in the transaction under way (see afterFailedTx). */
  private spoolWrote = false;

  constructor(
    db: DB,
    private readonly outbox: Spool,
    private readonly opts: AggregatorOptions,
  ) {
    migrate(db, 'pending_alerts', MIGRATIONS);
    // Inserts a group's rows or, when a quiet group takes a payload or a sent one turns quiet, replaces them.
    this.putPayload = db.prepare(
      'INSERT INTO pending_alerts (fingerprint, payload, closes_at, window_ms) VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET payload = excluded.payload, closes_at = excluded.closes_at, window_ms = excluded.window_ms',
    );
    this.insertSample = db.prepare('INSERT INTO pending_alert_samples (fingerprint, n, samples) VALUES (?, ?, ?)');
    this.selectSamples = db.prepare('SELECT n, samples FROM pending_alert_samples WHERE fingerprint = ? ORDER BY n, rowid');
    this.delSamples = db.prepare('DELETE FROM pending_alert_samples WHERE fingerprint = ?');
    this.putCounts = db.prepare(
      'INSERT INTO pending_alert_counts (fingerprint, count, first_seen, last_seen, description, severity, title, labels) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO UPDATE SET count = excluded.count, first_seen = excluded.first_seen, last_seen = excluded.last_seen, description = excluded.description, severity = excluded.severity, title = excluded.title, labels = excluded.labels',
    );
    this.writeCounts = db.prepare(
      'UPDATE pending_alert_counts SET count = ?, first_seen = ?, last_seen = ?, description = ?, severity = ?, title = ? WHERE fingerprint = ?',
    );
    this.writeLabels = db.prepare('UPDATE pending_alert_counts SET labels = ? WHERE fingerprint = ?');
    this.delPayload = db.prepare('DELETE FROM pending_alerts WHERE fingerprint = ?');
    this.delCounts = db.prepare('DELETE FROM pending_alert_counts WHERE fingerprint = ?');
    const select =
      'SELECT p.fingerprint, p.payload, p.closes_at, p.window_ms, c.count, c.first_seen, c.last_seen, c.description, c.severity, c.title, c.labels FROM pending_alerts p JOIN pending_alert_counts c USING (fingerprint)';
    this.selectOne = db.prepare(`${select} WHERE p.fingerprint = ?`);
    this.tx = db.transaction(
      (
        written: readonly Group[],
        spooled: readonly AlertPayload[],
        closed: readonly Group[],
        now: number,
        body: (() => void) | undefined,
        whenFull: WhenFull,
      ) => {
        this.spoolWrote = false;
        for (const g of written) this.writeGroup(g);
        for (const g of closed) this.closeGroup(g, now);
        body?.();
        if (spooled.length) {
          this.outbox.add(spooled, whenFull);
          // Only once add() returned: a refusal or a failed add() counted nothing.
          this.spoolWrote = true;
        }
      },
    );
    const samples = new Map<string, SampleRow[]>();
    for (const r of db.prepare('SELECT fingerprint, n, samples FROM pending_alert_samples ORDER BY fingerprint, n, rowid').all() as (SampleRow & {
      fingerprint: string;
    })[]) {
      let list = samples.get(r.fingerprint);
      if (!list) samples.set(r.fingerprint, (list = []));
      list.push(r);
    }
    for (const row of db.prepare(select).all() as StoredRow[]) {
      const alert = fromRow(row, samples.get(row.fingerprint) ?? []);
      this.groups.set(row.fingerprint, {
        fingerprint: row.fingerprint,
        alert,
        closesAt: row.closes_at,
        windowMs: row.window_ms,
        sendNow: false,
        payloadJson: undefined,
        newFrom: alert?.samples.length ?? 0,
        labelsMoved: false,
      });
    }
    if (this.groups.size) opts.log.info({ pending: this.groups.size }, 'Resuming de-duplication of alerts left pending by the previous run');
  }

  /**
   * Adds occurrences in one transaction; durable when it returns. Those of a
   * fingerprint without an open group are spooled in it, folded into one
   * alert, and open a window of windowMs; repeats inside it fold into the
   * group (see the top of this file). `inTx` runs inside that transaction (a
   * source's own writes that must commit or fail with the occurrences).
   * `whenFull`: what a full spool does to the write (see the top of this
   * file); with 'refuse' it throws SpoolFullError and nothing is counted.
   */
  add(alerts: readonly AlertPayload[], windowMs: number, inTx?: () => void, whenFull: WhenFull = 'drop'): void {
    if (alerts.length === 0 && !inTx) return;
    if (whenFull === 'refuse' && this.outbox.full) this.refuseIfSpooling(alerts, windowMs);
    if (windowMs <= 0) {
      this.write([], alerts, inTx, whenFull);
    } else {
      const touched = new Set<Group>();
      this.foldAll(touched, () => {
        for (const a of alerts) touched.add(this.fold(a, 0, windowMs));
      });
      this.write(touched, [], inTx, whenFull);
    }
    // Once written: a refused write is made again, and must not count twice.
    countOccurrences(alerts);
  }

  /** A staging area for a source that stores its events itself (see the top of this file); `whenFull` as for add(). */
  staging(whenFull: WhenFull = 'drop'): Staging {
    const s = new Staging(this, whenFull);
    this.stagings.add(s);
    return s;
  }

  /** Whether the spool is full: writes with whenFull 'refuse' that spool anything throw meanwhile. */
  get spoolFull(): boolean {
    return this.outbox.full;
  }

  /** Called when a full spool has room again. */
  onSpoolRoom(listener: () => void): () => void {
    return this.outbox.onRoom(listener);
  }

  /**
   * Closes the windows that are over (all of them with force): moves the
   * repeats they hold to the spool and reopens their groups quiet, and drops
   * the quiet ones. A group waits while occurrences of it are staged. Returns
   * how many alerts went to the spool. While the spool is full a group
   * holding repeats stays open (its repeats are stored already) until there
   * is room.
   */
  flush(force = false): number {
    const now = this.now();
    const due: Group[] = [];
    const sent: AlertPayload[] = [];
    const full = this.outbox.full;
    for (const g of this.groups.values()) {
      if ((force || now >= g.closesAt) && !this.isStaged(g.fingerprint) && !(full && g.alert)) {
        due.push(g);
        if (g.alert) sent.push(g.alert);
      }
    }
    if (due.length === 0) return 0;
    try {
      // Not full (checked above): the spool takes the write whole.
      this.tx([], sent, due, now, undefined, 'refuse');
    } catch (e) {
      this.afterFailedTx();
      throw e;
    }
    for (const g of due) {
      if (g.alert && g.windowMs > 0) {
        g.alert = undefined;
        g.closesAt = now + g.windowMs;
        g.newFrom = 0;
      } else {
        this.groups.delete(g.fingerprint);
      }
    }
    for (const a of sent) emitted.inc({ source: a.source });
    return sent.length;
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

  /** Open groups, quiet ones and those of staged occurrences included. */
  get pending(): number {
    let n = this.groups.size;
    for (const s of this.stagings) for (const fp of s.fingerprints()) if (!this.groups.has(fp)) n++;
    return n;
  }

  /** @internal Staging.commit: folds what was staged into the groups and writes them with `inTx`. */
  commitStaged(staged: readonly Staged[], direct: readonly AlertPayload[], inTx: (() => void) | undefined, whenFull: WhenFull): void {
    if (whenFull === 'refuse' && this.outbox.full && (direct.length > 0 || staged.some((st) => !this.groups.has(st.alert.fingerprint)))) {
      throw new SpoolFullError();
    }
    const touched = new Set<Group>();
    this.foldAll(touched, () => {
      for (const st of staged) touched.add(this.fold(st.alert, st.setter, st.windowMs));
    });
    this.write(touched, direct, inTx, whenFull);
  }

  /**
   * Throws SpoolFullError if add(alerts, windowMs) would spool anything: before
   * folding or opening a transaction, because a source refused while the spool
   * is full retries often, and a refusal found inside the transaction costs a
   * rollback, a reload of the groups and a recount of the whole spool.
   */
  private refuseIfSpooling(alerts: readonly AlertPayload[], windowMs: number): void {
    // Without a window every alert is spooled; with one, those of a fingerprint without an open group are.
    if (alerts.length > 0 && (windowMs <= 0 || alerts.some((a) => !this.groups.has(a.fingerprint)))) throw new SpoolFullError();
  }

  /**
   * Runs `folds`, which add the groups they change to `touched`; if one
   * throws (an occurrence whose payload cannot be serialised), the groups
   * folded before it are put back to what is stored, as a failed write does:
   * the caller adds or stages them again, and they must not count twice.
   */
  private foldAll(touched: Set<Group>, folds: () => void): void {
    try {
      folds();
    } catch (e) {
      this.reload([...touched]);
      throw e;
    }
  }

  /** @internal */
  forget(s: Staging): void {
    this.stagings.delete(s);
  }

  /**
   * @internal How many samples of a staged occurrence its group can use: the
   * places it has left, or one when the occurrence would raise its severity.
   */
  sampleRoom(a: AlertPayload): number {
    return this.sampleRoomFor(a.fingerprint, a.severity);
  }

  /** @internal The payload of the open group of this fingerprint, as folded so far (none while it is quiet); not to be changed. */
  openAlert(fingerprint: string): Readonly<AlertPayload> | undefined {
    return this.groups.get(fingerprint)?.alert;
  }

  /** @internal sampleRoom of an occurrence of this fingerprint and severity. */
  sampleRoomFor(fingerprint: string, severity: Severity): number {
    const a = this.groups.get(fingerprint)?.alert;
    if (!a) return MAX_SAMPLES;
    const free = MAX_SAMPLES - a.samples.length;
    return free > 0 ? free : SEVERITY_RANK[severity] > SEVERITY_RANK[a.severity] ? 1 : 0;
  }

  private isStaged(fingerprint: string): boolean {
    for (const s of this.stagings) if (s.holds(fingerprint)) return true;
    return false;
  }

  /** @internal */
  now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /**
   * Folds an occurrence (or a folded run of them) into its group in memory:
   * one with repeats takes it by the fold rule, a quiet one starts afresh from
   * it, and without a group it opens one, to be sent by the write.
   */
  private fold(a: AlertPayload, setter: number, windowMs: number): Group {
    const g = this.groups.get(a.fingerprint);
    if (g?.alert) {
      const labels = g.alert.labels;
      g.newFrom = Math.min(g.newFrom, foldInto(g.alert, a, setter));
      if (g.alert.labels !== labels) g.labelsMoved = true;
      return g;
    }
    const alert = { ...a, samples: a.samples.slice(0, MAX_SAMPLES) };
    if (setter >= MAX_SAMPLES) alert.samples[MAX_SAMPLES - 1] = a.samples[setter];
    if (g) {
      // Serialised now, while the events arrive, rather than all at once in the next write; and
      // first, so that a payload that cannot be serialised leaves the group quiet (foldAll puts
      // back only the groups folded before the one that threw).
      const payloadJson = Buffer.from(JSON.stringify(alert));
      g.alert = alert;
      // The window asked for now (dedup_window may have changed) is the one it reopens for, and a
      // shorter one closes this window sooner: the repeat waits no longer than the window now set.
      g.windowMs = windowMs;
      g.closesAt = Math.min(g.closesAt, this.now() + windowMs);
      g.payloadJson = payloadJson;
      g.newFrom = alert.samples.length;
      g.labelsMoved = false;
      return g;
    }
    // Sent by the write, which serialises it for the spool; the group is stored quiet, without it.
    const opened: Group = {
      fingerprint: a.fingerprint,
      alert,
      closesAt: this.now() + windowMs,
      windowMs,
      sendNow: true,
      payloadJson: undefined,
      newFrom: alert.samples.length,
      labelsMoved: false,
    };
    this.groups.set(a.fingerprint, opened);
    return opened;
  }

  /**
   * One transaction writing `groups`, spooling those it opens and `direct`,
   * and running `body`; on failure memory is put back to what is stored.
   */
  private write(groups: Iterable<Group>, direct: readonly AlertPayload[], body: (() => void) | undefined, whenFull: WhenFull): void {
    const written = [...groups];
    const spooled = [...direct];
    for (const g of written) if (g.sendNow) spooled.push(g.alert!);
    try {
      this.tx(written, spooled, [], 0, body, whenFull);
    } catch (e) {
      this.reload(written);
      this.afterFailedTx();
      throw e;
    }
    for (const g of written) {
      if (g.sendNow) {
        g.sendNow = false;
        g.alert = undefined;
      }
      g.payloadJson = undefined;
      g.newFrom = g.alert?.samples.length ?? 0;
      g.labelsMoved = false;
    }
    for (const a of spooled) emitted.inc({ source: a.source });
  }

  /**
   * The spool counts the rows it adds as it adds them: when it did inside a transaction that then failed (its
   * COMMIT), it counts again. Only then: counting reads the whole spool, which is large when writes keep failing.
   */
  private afterFailedTx(): void {
    if (this.spoolWrote) this.outbox.resync();
    this.spoolWrote = false;
  }

  private writeGroup(g: Group): void {
    const a = g.alert;
    if (g.sendNow || !a) {
      this.writeQuiet(g.fingerprint, g.closesAt, g.windowMs);
      return;
    }
    // The payload was serialised when the group took it: labels a later fold moved are written beside it.
    const labels = g.labelsMoved ? JSON.stringify(a.labels) : null;
    if (g.payloadJson) {
      this.putPayload.run(a.fingerprint, g.payloadJson, g.closesAt, g.windowMs);
      this.putCounts.run(a.fingerprint, a.count, a.first_seen, a.last_seen, a.description, a.severity, a.title, labels);
    } else {
      this.writeCounts.run(a.count, a.first_seen, a.last_seen, a.description, a.severity, a.title, a.fingerprint);
      if (labels !== null) this.writeLabels.run(labels, a.fingerprint);
    }
    if (g.newFrom < a.samples.length) this.insertSample.run(a.fingerprint, g.newFrom, Buffer.from(JSON.stringify(a.samples.slice(g.newFrom))));
  }

  private writeQuiet(fingerprint: string, closesAt: number, windowMs: number): void {
    this.putPayload.run(fingerprint, NO_PAYLOAD, closesAt, windowMs);
    this.putCounts.run(fingerprint, 0, '', '', '', null, null, null);
  }

  /** A group's window closed at `now`: stored quiet for another window if it was sent, deleted if not (or if it has no window). */
  private closeGroup(g: Group, now: number): void {
    this.delSamples.run(g.fingerprint);
    if (g.alert && g.windowMs > 0) {
      this.writeQuiet(g.fingerprint, now + g.windowMs, g.windowMs);
      return;
    }
    this.delPayload.run(g.fingerprint);
    this.delCounts.run(g.fingerprint);
  }

  /** Puts groups back to their stored state (a transaction writing them failed). */
  private reload(groups: readonly Group[]): void {
    for (const g of groups) {
      const row = this.selectOne.get(g.fingerprint) as StoredRow | undefined;
      if (!row) {
        if (this.groups.get(g.fingerprint) === g) this.groups.delete(g.fingerprint);
        continue;
      }
      g.alert = fromRow(row, this.selectSamples.all(row.fingerprint) as SampleRow[]);
      g.closesAt = row.closes_at;
      g.windowMs = row.window_ms;
      g.sendNow = false;
      g.payloadJson = undefined;
      g.newFrom = g.alert?.samples.length ?? 0;
      g.labelsMoved = false;
      this.groups.set(row.fingerprint, g);
    }
  }
}

/**
 * Occurrences a source has stored itself, folded in memory until the source
 * commits them with its own record of what they came from. A failed commit
 * forgets them: the source stages them again from its own storage. They go to
 * the occurrences metric when committed, so that staging them again after a
 * failed or refused commit does not count them twice.
 */
export class Staging {
  private readonly byFingerprint = new Map<string, Staged>();
  /** Staged without a window: for the spool as they are. */
  private direct: AlertPayload[] = [];
  private count = 0;
  /**
   * Occurrences staged or bumped since the last commit, for the metric: those
   * of the current run of one source in plain fields (a source's staging
   * sees one source), earlier runs of other sources in `otherRuns`. Per flow
   * this is a compare and an add, and no commit allocates: the two maps are
   * swapped and reused.
   */
  private runSource = '';
  private runCount = 0;
  private otherRuns = new Map<string, number>();
  private spareRuns = new Map<string, number>();

  constructor(
    private readonly agg: AlertAggregator,
    private readonly whenFull: WhenFull,
  ) {}

  stage(alerts: readonly AlertPayload[], windowMs: number): void {
    if (alerts.length === 0) return;
    for (const a of alerts) {
      if (a.source !== this.runSource) this.newRun(a.source);
      this.runCount += a.count;
    }
    this.count += alerts.length;
    if (windowMs <= 0) {
      for (const a of alerts) this.direct.push(a);
      return;
    }
    for (const a of alerts) {
      const st = this.byFingerprint.get(a.fingerprint);
      // Only the samples the group can still take, or that may raise its
      // severity, are kept: what is staged lives until the commit, long
      // enough for the garbage collector to move it.
      const room = this.agg.sampleRoom(a);
      if (!st) {
        // The occurrence is handed over: it becomes the staged summary.
        if (a.samples.length > room) a.samples = a.samples.slice(0, room);
        this.byFingerprint.set(a.fingerprint, { alert: a, setter: 0, windowMs });
        continue;
      }
      const before = st.alert.severity;
      const at = foldInto(st.alert, a, 0, Math.max(room, st.alert.samples.length));
      if (st.alert.severity !== before) st.setter = Math.min(at, st.alert.samples.length - 1);
    }
  }

  /**
   * Folds one more occurrence of an alert already staged when all it would
   * change is the count and last_seen: it is not earlier than the staged
   * first_seen, does not raise the severity, and its sample would find no
   * place. Then the source need not build the occurrence's payload at all (a
   * flood's repeats are nearly all of this kind). Returns false, folding
   * nothing, when the occurrence needs its payload: stage() it.
   */
  bump(fingerprint: string, seen: string, severity: Severity, windowMs: number): boolean {
    if (windowMs <= 0) return false;
    const st = this.byFingerprint.get(fingerprint);
    if (!st) return this.bumpGroup(fingerprint, seen, severity, windowMs);
    const a = st.alert;
    if (seen < a.first_seen || SEVERITY_RANK[severity] > SEVERITY_RANK[a.severity]) return false;
    if (this.agg.sampleRoomFor(fingerprint, severity) > a.samples.length) return false;
    a.count++;
    if (seen >= a.last_seen) a.last_seen = seen;
    this.count++;
    if (a.source !== this.runSource) this.newRun(a.source);
    this.runCount++;
    return true;
  }

  /**
   * The first repeat since the last commit of a group that is open and has
   * no sample place left for it (not a quiet one): staged as a copy of the group's payload
   * with this occurrence's count and times and no sample. What the commit
   * folds into the group is then what the occurrence's own payload would
   * give: it is not earlier than the group's first_seen (so the group keeps
   * its title and description), does not raise the severity, and its sample
   * would be dropped. The group cannot close meanwhile: flush() waits for
   * staged fingerprints.
   */
  private bumpGroup(fingerprint: string, seen: string, severity: Severity, windowMs: number): boolean {
    const g = this.agg.openAlert(fingerprint);
    if (!g || seen < g.first_seen || SEVERITY_RANK[severity] > SEVERITY_RANK[g.severity]) return false;
    if (this.agg.sampleRoomFor(fingerprint, severity) > 0) return false;
    this.byFingerprint.set(fingerprint, {
      alert: { ...g, count: 1, first_seen: seen, last_seen: seen, samples: [] },
      setter: 0,
      windowMs,
    });
    this.count++;
    if (g.source !== this.runSource) this.newRun(g.source);
    this.runCount++;
    return true;
  }

  /**
   * Occurrences go to the occurrences metric a run of one source at a time,
   * at the latest at the commit: the metric's inc() for each flow of a flood
   * cost more than the bump.
   */
  private newRun(source: string): void {
    if (this.runCount) this.otherRuns.set(this.runSource, (this.otherRuns.get(this.runSource) ?? 0) + this.runCount);
    this.runSource = source;
    this.runCount = 0;
  }

  /**
   * Writes everything staged and runs `inTx` in one transaction; throws (and
   * forgets what was staged) if it fails, or, for a staging made with
   * whenFull 'refuse', if the spool is full and the commit would spool anything.
   */
  commit(inTx?: () => void): void {
    const staged = [...this.byFingerprint.values()];
    const direct = this.direct;
    const runSource = this.runSource;
    const runCount = this.runCount;
    const others = this.otherRuns;
    this.otherRuns = this.spareRuns;
    this.spareRuns = others;
    this.byFingerprint.clear();
    this.direct = [];
    this.count = 0;
    this.runCount = 0;
    try {
      this.agg.commitStaged(staged, direct, inTx, this.whenFull);
    } catch (e) {
      // Forgotten with what was staged: the source stages them again.
      others.clear();
      throw e;
    }
    if (runCount) bump(runSource, runCount);
    if (others.size) {
      for (const [source, n] of others) bump(source, n);
      others.clear();
    }
  }

  /** Occurrences staged since the last commit. */
  get size(): number {
    return this.count;
  }

  holds(fingerprint: string): boolean {
    return this.byFingerprint.has(fingerprint);
  }

  fingerprints(): IterableIterator<string> {
    return this.byFingerprint.keys();
  }

  /** Detaches from the aggregator, forgetting what is staged (the source still has it). */
  close(): void {
    this.runCount = 0;
    this.otherRuns.clear();
    this.byFingerprint.clear();
    this.direct = [];
    this.count = 0;
    this.agg.forget(this);
  }
}

/**
 * Folds `occ` into `into` by the shared rule, samples included: `occ`'s
 * samples fill free places, and the one of the occurrence that raised the
 * severity (occ.samples[setter]) takes the last place if none is free, so what
 * made the alert this severe reaches the server. Returns the first sample
 * place it changed (into.samples.length if none).
 */
function foldInto(into: AlertPayload, occ: AlertPayload, setter: number, max = MAX_SAMPLES): number {
  const folded = foldIn(into, occ);
  const samples = into.samples;
  const from = samples.length;
  let pushed = 0;
  for (const s of occ.samples) {
    if (samples.length >= max) break;
    samples.push(s);
    pushed++;
  }
  if (folded & FOLD_SETS_SEVERITY && setter >= pushed && setter < occ.samples.length && max > 0) {
    samples[max - 1] = occ.samples[setter];
    return Math.min(from, max - 1);
  }
  return from;
}

/** A group as stored: its payload, then its sample rows (ordered by n, then as written), each filling places from n on; undefined: quiet. */
function fromRow(row: StoredRow, sampleRows: readonly SampleRow[]): AlertPayload | undefined {
  if (row.count === 0) return undefined;
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
  if (row.labels !== null) alert.labels = JSON.parse(row.labels) as Record<string, string>;
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
