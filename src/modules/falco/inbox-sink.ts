import Database from 'better-sqlite3';
import { dirname } from 'node:path';
import type { Staging } from '../../agent/alerts/aggregator.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import { countOutcomes, falcoEvents, STORE_FAILED, type Outcome } from './events.js';
import { FileInbox, MemoryInbox, type Inbox, type InboxPosition, type InboxRecord } from './inbox.js';
import { parseStoredFalcoJson, type FalcoEvent } from './parse.js';
import type { FalcoAlertBuilder } from './to-alert.js';
import type { FalcoUuids } from './uuids.js';
import { isVerdictError } from '../../shared/errors.js';
import { isSpoolFull } from '../../agent/spool/spool.js';

// The HTTP input's path from a stored body to a written alert occurrence.
//
// A request's raw body is appended to a checksummed file in --data-dir
// (falco-inbox-<n>.log, inbox.ts), with one write for every request of the
// same event-loop turn, and the request is answered once that write is done.
// Only then is the event turned into an alert occurrence and staged in the
// aggregator (in memory). Staged occurrences are committed in batches (every
// 500 ms, or at once without a dedup window), and that same SQLite
// transaction records how far into the inbox they came from
// (falco_inbox_state) and the events' Falcosidekick uuids. A crash at any
// point leaves every answered event either past that position in the inbox
// (read again at start) or in the aggregator's tables, never in both and never
// in neither.
//
// A write can fail because of the storage (SQLite, the disk): the events stay
// in the inbox and are read again later. It can also fail because of one event
// (its alert cannot be serialised): then retrying would fail for ever and hold
// up every event after it. Such a failure is narrowed down by writing the
// events again in halving runs; the one event that fails alone is logged with
// its place in the inbox, counted (outcome "unwritable") and skipped.
//
// A write can also be refused because the agent's alert spool is full (the
// server has not acknowledged what it holds): the events stay in the inbox,
// as after a storage failure, and are read again and written once the spool
// has room. Nothing is skipped for it; the HTTP input answers 503 meanwhile
// (sink.ts), so the inbox does not grow.

const MIGRATIONS = [
  // How far the HTTP inbox has been turned into written occurrences.
  `CREATE TABLE falco_inbox_state (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     gen INTEGER NOT NULL,
     offset INTEGER NOT NULL
   )`,
];

const REPLAY_CHUNK = 1_000;
const START: InboxPosition = { gen: 0, offset: 0 };
/** How much of a skipped event's body its log line shows. */
const BODY_PREVIEW = 200;

/** What a commit of the staged occurrences came to. */
type Persisted = 'written' | 'retry' | 'narrow';

/**
 * Whether a failed commit is the storage's fault (SQLite's own errors, and
 * Node's system errors, which carry `syscall`): those depend on the disk and
 * may pass, so the events wait in the inbox. Anything else is taken as the
 * events' fault (typically serialising an alert throws), because a commit
 * touches nothing but the staged alerts and the storage, and because the two
 * mistakes cost differently: taking an event's fault for the storage's would
 * hold up every event after it for ever, while the other way round costs
 * retries in shorter runs and at worst the one event left alone, logged.
 */
function isStorageError(e: unknown): boolean {
  return e instanceof Database.SqliteError || (e instanceof Error && typeof (e as NodeJS.ErrnoException).syscall === 'string');
}

export type AcceptCallback = (err: Error | undefined, outcome?: Outcome) => void;

/** An HTTP event waiting for the next append. */
export interface InboxPending {
  ev: FalcoEvent;
  body: Buffer;
  done: AcceptCallback;
}

export interface InboxSinkOptions {
  windowMs: number;
  log: Logger;
  builder: FalcoAlertBuilder;
  /** How long staged occurrences wait at most before they are committed (default 500 ms). */
  persistIntervalMs?: number;
  /** Staged events that make the commit happen at once (default 20,000). */
  maxStaged?: number;
  /** Whether the spool is full: the events wait in the inbox meanwhile. */
  spoolFull?: () => boolean;
  /** A commit was refused because the spool is full. */
  onSpoolFull?: () => void;
}

export class InboxSink {
  private readonly saveState;
  /** Made once: better-sqlite3 builds four wrapper functions per db.transaction() call. */
  private readonly runTx;
  private store: Inbox | undefined;
  /**
   * Inbox events are numbered in memory: the last appended; every one up to
   * stagedSeq is staged; every one up to persistedSeq has its occurrences
   * written. Positions are where in the inbox files they end.
   */
  private lastSeq = 0;
  private stagedSeq = 0;
  private persistedSeq = 0;
  private stagedPos: InboxPosition;
  private persistedPos: InboxPosition;
  private replaying = false;
  /**
   * After a write failed for a reason other than the storage: the events up
   * to this one are written in runs of `runLength`, halved at each failure,
   * until the one that cannot be written is found.
   */
  private narrowTo = 0;
  private runLength = REPLAY_CHUNK;
  private persistTimer: NodeJS.Timeout | undefined;
  private persistSoon = false;
  /** A pending retry of replayLoop (see replayLater). */
  private replayTimer: NodeJS.Timeout | undefined;
  /**
   * Events up to this one have been counted and logged for what turning them
   * into alerts found (unreadable, skipped, a failing builder): a replay after
   * a failed write reads them again, some several times while narrowing.
   */
  private reportedSeq = 0;
  private readonly errors = new LogThrottle();
  private readonly readErrors = new LogThrottle();
  private closed = false;

  constructor(
    private readonly db: DB,
    private readonly staging: Staging,
    private readonly uuids: FalcoUuids,
    private readonly opts: InboxSinkOptions,
  ) {
    migrate(db, 'falco_inbox', MIGRATIONS);
    this.saveState = db.prepare(
      'INSERT INTO falco_inbox_state (id, gen, offset) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET gen = excluded.gen, offset = excluded.offset',
    );
    this.runTx = db.transaction((f: () => void) => f());
    const state = db.prepare('SELECT gen, offset FROM falco_inbox_state WHERE id = 1').get() as InboxPosition | undefined;
    this.stagedPos = this.persistedPos = state ? { gen: state.gen, offset: state.offset } : START;
  }

  /** Turns what a crash left between answering and writing the occurrences into alerts. */
  replayAtStart(): void {
    this.replaying = true;
    while (this.replayStep(true)) {
      /* until caught up */
    }
    if (this.lastSeq) {
      const persisted = this.persistNow();
      if (persisted === 'written') this.opts.log.info({ events: this.lastSeq }, 'Turned Falco events stored before the restart into alerts');
      else if (persisted === 'narrow')
        // Not waiting: the runs go on at once, and the event that cannot be written is logged on its own.
        this.opts.log.info(
          { events: this.lastSeq },
          'Falco events stored before the restart include one whose alert cannot be written; they are being written in smaller runs to find it',
        );
      else
        this.opts.log.info({ events: this.lastSeq }, 'Falco events stored before the restart wait in the inbox; they become alerts once they can be written');
    }
  }

  /** Inbox events answered but whose occurrences are not written yet. */
  get unwritten(): number {
    return this.lastSeq - this.persistedSeq;
  }

  /** One append for the batch, then the answers, then the alerts. */
  take(batch: readonly InboxPending[]): void {
    const outcomes: Outcome[] = new Array<Outcome>(batch.length);
    const bodies: Buffer[] = [];
    const mark = this.uuids.mark();
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      if (!this.uuids.claim(p.ev.uuid)) {
        outcomes[i] = 'duplicate';
        continue;
      }
      outcomes[i] = 'accepted';
      bodies.push(p.body);
    }
    let end: InboxPosition | undefined;
    if (bodies.length) {
      try {
        end = this.inbox.append(bodies);
      } catch (e) {
        this.uuids.rollBack(mark);
        this.opts.log.error({ error: errText(e), events: batch.length }, STORE_FAILED);
        falcoEvents.inc({ input: 'http', outcome: 'failed' }, batch.length);
        for (const p of batch) p.done(e as Error);
        return;
      }
    }
    this.lastSeq += bodies.length;
    countOutcomes('http', outcomes);
    for (let i = 0; i < batch.length; i++) batch[i]!.done(undefined, outcomes[i]);
    // Answered; now the alerts. During a replay the replay reads these from the inbox.
    if (!end || this.replaying) return;
    const alerts: AlertPayload[] = [];
    // The HTTP input checked skipReason() before the append.
    for (let i = 0; i < batch.length; i++) if (outcomes[i] === 'accepted') this.buildInto(alerts, batch[i]!.ev, false, true);
    this.reportedSeq = this.lastSeq;
    this.stageUpTo(alerts, this.lastSeq, end);
    this.writeUuidsNow();
  }

  /** Stages what the inbox still holds and commits every staged occurrence. */
  settle(): void {
    while (this.replaying) this.replayStep(false);
    this.persistNow();
  }

  close(): void {
    if (this.closed) return;
    // If this commit fails the events stay in the inbox for the next start.
    this.settle();
    this.closed = true;
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = undefined;
    this.staging.close();
    this.store?.close();
    this.store = undefined;
  }

  private get inbox(): Inbox {
    return (this.store ??= this.db.memory ? new MemoryInbox() : new FileInbox(dirname(this.db.name), this.persistedPos, () => this.db.open));
  }

  /**
   * Writes the new uuids in a small transaction of their own, so that the
   * commit of the occurrences (which would write them otherwise) stays short.
   * A uuid is safe in the inbox already; this only moves it to falco_uuids.
   */
  private writeUuidsNow(): void {
    if (this.uuids.unwritten === 0) return;
    let written;
    try {
      this.runTx(() => {
        written = this.uuids.writeInTx();
      });
    } catch {
      return; // written with the occurrences instead
    }
    this.uuids.committed(written!);
  }

  /** `report`: the event is read for the first time, so what it comes to is counted and logged. */
  private buildInto(alerts: AlertPayload[], ev: FalcoEvent, check: boolean, report: boolean): void {
    try {
      if (!check) {
        alerts.push(this.opts.builder.toAlert(ev));
        return;
      }
      const r = this.opts.builder.build(ev);
      if (!r.skipped) alerts.push(r.alert);
      else if (report) falcoEvents.inc({ input: 'http', outcome: r.skipped });
    } catch (e) {
      // Not expected: build() takes any parsed event. The event is dropped rather than retried forever.
      if (!report) return;
      falcoEvents.inc({ input: 'http', outcome: 'unwritable' });
      this.opts.log.error({ error: errText(e), rule: ev.rule }, 'Failed to turn a stored Falco event into an alert; it is skipped');
    }
  }

  private stageUpTo(alerts: AlertPayload[], seq: number, pos: InboxPosition): void {
    this.staging.stage(alerts, this.opts.windowMs);
    this.stagedSeq = seq;
    this.stagedPos = pos;
    if (!this.replaying) this.schedulePersist();
  }

  private schedulePersist(): void {
    // Without a window there is nothing to fold: the alerts go to the spool at once.
    if (this.opts.windowMs <= 0) {
      this.persistNow();
      return;
    }
    if (this.staging.size >= (this.opts.maxStaged ?? 20_000)) {
      if (!this.persistSoon) {
        this.persistSoon = true;
        setImmediate(() => this.persistNow());
      }
    } else if (!this.persistTimer) {
      this.persistTimer = setTimeout(() => this.persistNow(), this.opts.persistIntervalMs ?? 500);
      this.persistTimer.unref();
    }
  }

  /** Commits what is staged with the inbox position and the uuids. */
  private persistNow(): Persisted {
    this.persistSoon = false;
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    if (this.stagedSeq <= this.persistedSeq) return 'written';
    const seq = this.stagedSeq;
    const pos = this.stagedPos;
    try {
      this.commitUpTo(pos);
    } catch (e) {
      const from = this.persistedPos;
      const events = seq - this.persistedSeq;
      this.rolledBack();
      if (isSpoolFull(e)) {
        // Not the events' fault: they wait in the inbox until the spool has room.
        this.opts.onSpoolFull?.();
        return 'retry';
      }
      if (isStorageError(e)) return this.writeFailed(e);
      if (events === 1) return this.skipUnwritable(e, from, seq, pos);
      // One of these events (or more) cannot be written: write them again in shorter runs.
      this.narrowTo = Math.max(this.narrowTo, seq);
      this.runLength = Math.ceil(events / 2);
      return 'narrow';
    }
    this.advance(seq, pos);
    return 'written';
  }

  /** The events stay in the inbox for the next try; logged once a minute, as a failing disk fails every try. */
  private writeFailed(e: unknown): Persisted {
    const suppressed = this.errors.pass();
    if (suppressed !== undefined) {
      this.opts.log.error(
        { error: errText(e), events: this.lastSeq - this.persistedSeq, suppressed },
        'Failed to write alerts for stored Falco events; they stay in the inbox and are retried',
      );
    }
    return 'retry';
  }

  /** One transaction: the staged occurrences, the inbox position they reach and the new uuids. */
  private commitUpTo(pos: InboxPosition): void {
    let written;
    this.staging.commit(() => {
      this.saveState.run(pos.gen, pos.offset);
      written = this.uuids.writeInTx();
    });
    this.uuids.committed(written!);
  }

  /**
   * The event just before `end` failed to be written alone, not because of
   * the storage: it never will be. Records the inbox position past it, so
   * that the events after it are written.
   */
  private skipUnwritable(e: unknown, from: InboxPosition, seq: number, end: InboxPosition): Persisted {
    let record: InboxRecord | undefined;
    try {
      record = this.inbox.read(from, 1)[0];
    } catch {
      // Only for the log line.
    }
    try {
      this.commitUpTo(end);
    } catch (e2) {
      this.rolledBack();
      return this.writeFailed(e2);
    }
    falcoEvents.inc({ input: 'http', outcome: 'unwritable' });
    this.opts.log.error(
      {
        error: errText(e),
        inbox: record && `falco-inbox-${record.start.gen}.log`,
        offset: record?.start.offset,
        event: record?.body.subarray(0, BODY_PREVIEW).toString('utf8'),
      },
      'Skipped a stored Falco event whose alert cannot be written; the events after it are written',
    );
    this.advance(seq, end);
    return 'written';
  }

  /** The events up to `seq` have their occurrences written. */
  private advance(seq: number, pos: InboxPosition): void {
    this.persistedSeq = seq;
    this.persistedPos = pos;
    if (this.stagedSeq < seq) {
      this.stagedSeq = seq;
      this.stagedPos = pos;
    }
    if (this.narrowTo <= seq) this.narrowTo = 0;
    try {
      this.store?.release(pos);
    } catch (e) {
      this.opts.log.warn({ error: errText(e) }, 'Could not remove a consumed Falco inbox file; it is removed at the next start');
    }
  }

  /** Reads the inbox back after persistIntervalMs (or once the spool has room: spoolHasRoom()). */
  private replayLater(): void {
    if (this.replayTimer) clearTimeout(this.replayTimer);
    this.replayTimer = setTimeout(() => {
      this.replayTimer = undefined;
      this.replayLoop();
    }, this.opts.persistIntervalMs ?? 500);
    this.replayTimer.unref();
  }

  /** The spool has room again: what waits in the inbox is read back now rather than at the next retry. */
  spoolHasRoom(): void {
    if (!this.replayTimer) return;
    clearTimeout(this.replayTimer);
    this.replayTimer = undefined;
    setImmediate(() => this.replayLoop());
  }

  /** The staged occurrences are gone from memory; their events are still in the inbox: read them again from there. */
  private rolledBack(): void {
    this.stagedSeq = this.persistedSeq;
    this.stagedPos = this.persistedPos;
    if (!this.replaying && !this.closed) {
      this.replaying = true;
      // Not at once: if the storage is failing, the next write fails too.
      this.replayLater();
    }
  }

  /**
   * Stages the next inbox events not staged yet; false when caught up. At
   * start (`fresh`) the events are new to this process: they are counted and
   * their uuids remembered.
   */
  private replayStep(fresh: boolean, limit = REPLAY_CHUNK): boolean {
    const records = this.inbox.read(this.stagedPos, limit);
    const alerts: AlertPayload[] = [];
    let seq = this.stagedSeq;
    for (const r of records) {
      seq++;
      const report = seq > this.reportedSeq;
      let ev: FalcoEvent;
      try {
        ev = parseStoredFalcoJson(r.body.toString('utf8'));
      } catch (e) {
        if (!report) continue;
        falcoEvents.inc({ input: 'http', outcome: 'invalid' });
        this.opts.log.error(
          {
            error: isVerdictError(e, 'VERDICT_FALCO_EVENT_INVALID') ? e.message : String(e),
            inbox: `falco-inbox-${r.start.gen}.log`,
            offset: r.start.offset,
            event: r.body.subarray(0, BODY_PREVIEW).toString('utf8'),
          },
          'Skipped a stored Falco event that cannot be read back; the events after it are written',
        );
        continue;
      }
      if (fresh) this.uuids.claim(ev.uuid);
      this.buildInto(alerts, ev, true, report);
    }
    this.reportedSeq = Math.max(this.reportedSeq, seq);
    if (fresh) this.lastSeq = Math.max(this.lastSeq, seq);
    if (records.length) this.stageUpTo(alerts, seq, records[records.length - 1]!.end);
    if (records.length < limit) {
      // Caught up: events stored from now on are staged as they come.
      this.replaying = false;
      return false;
    }
    return true;
  }

  private replayLoop(): void {
    if (!this.replaying || this.closed) return;
    if (this.opts.spoolFull?.()) {
      // Reading the inbox back would only be refused again.
      this.replayLater();
      return;
    }
    const narrowing = this.stagedSeq < this.narrowTo;
    let more: boolean;
    try {
      more = this.replayStep(false, narrowing ? Math.min(this.runLength, this.narrowTo - this.stagedSeq) : REPLAY_CHUNK);
    } catch (e) {
      // Reading the inbox back fails as the write before it did (the disk): the events
      // stay in the inbox and are read again later; this runs in a timer, nothing above catches.
      const suppressed = this.readErrors.pass();
      if (suppressed !== undefined) this.opts.log.error({ error: errText(e), suppressed }, 'Failed to read stored Falco events back; retrying');
      this.replayLater();
      return;
    }
    if (narrowing) {
      // Each run is written on its own, so that a failure names fewer events.
      this.replaying = true;
      const r = this.persistNow();
      if (r === 'retry') {
        this.replayLater();
        return;
      }
      if (r === 'written') {
        this.runLength = Math.min(REPLAY_CHUNK, this.runLength * 2);
        if (!more) {
          // Caught up with the inbox.
          this.narrowTo = 0;
          this.replaying = false;
          return;
        }
      }
      setImmediate(() => this.replayLoop());
      return;
    }
    if (more) setImmediate(() => this.replayLoop());
    else this.schedulePersist();
  }
}
