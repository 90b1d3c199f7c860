import { dirname } from 'node:path';
import type { Staging } from '../../agent/alerts/aggregator.js';
import { isSpoolFull, SPOOL_FULL_MESSAGE, SpoolFullError, type WhenFull } from '../../agent/spool/spool.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { falcoEvents, STORE_FAILED, type FalcoInput, type Outcome } from './events.js';
import { hasInboxFiles } from './inbox.js';
import { InboxSink, type AcceptCallback, type InboxPending } from './inbox-sink.js';
import type { FalcoEvent } from './parse.js';
import type { FalcoAlertBuilder } from './to-alert.js';
import { FalcoUuids } from './uuids.js';
import { VerdictError } from '../../shared/errors.js';

// Where every Falco input hands its events, and what it hands on to the
// aggregator: input -> parse -> to-alert -> sink (Falcosidekick uuids, the HTTP
// inbox) -> aggregator -> spool. The sink only ever calls the aggregator.
//
// HTTP events go through the inbox (inbox-sink.ts): answered once their raw
// bodies are stored, turned into occurrences right after. The other inputs
// (file, stdin, gRPC) hand built alerts to commit(): one transaction with the
// aggregator's writes, the events' uuids and whatever the input must remember
// with them (a file offset). Both queue per event-loop turn, so one append or
// one transaction serves every event of the turn.
//
// Every write asks the spool to refuse it while it is full (whenFull
// 'refuse', spool.ts) rather than drop the alerts: the events were answered or
// read already, so they wait where they are (the HTTP inbox, the file, the
// pipe, the gRPC input's memory) and are written when the spool has room.
// Meanwhile the HTTP input answers 503. The sink logs the pause once per
// episode and the resumption when the spool has room again.

export interface SinkItem {
  alert: AlertPayload;
  uuid?: string;
}

interface AlertWriter {
  /** Durable when it returns; `inTx` runs inside the same transaction. With whenFull 'refuse' it throws while the spool is full. */
  add(alerts: readonly AlertPayload[], windowMs: number, inTx?: () => void, whenFull?: WhenFull): void;
}

/** A full spool, and when it has room again (AlertAggregator has both). */
interface SpoolWatch {
  readonly spoolFull: boolean;
  onSpoolRoom(listener: () => void): () => void;
}

/**
 * What the sink needs of the aggregator (ctx.alerts) for commit() and
 * submit(). Both of SpoolWatch or neither: an input refused by a full spool
 * waits for onSpoolRoom, and a spoolFull nothing ends would spin it.
 */
export type AlertAdder = AlertWriter & (SpoolWatch | { readonly spoolFull?: undefined; onSpoolRoom?: undefined });

/** What the HTTP inbox needs of the aggregator in addition (AlertAggregator has it). */
export type StagingAlertAdder = AlertAdder & {
  staging(whenFull?: WhenFull): Staging;
};

function canStage(a: AlertAdder): a is StagingAlertAdder {
  return typeof (a as Partial<StagingAlertAdder>).staging === 'function';
}

export interface FalcoSinkOptions {
  /** Remembered Falcosidekick uuids; 0 turns idempotency off. */
  uuidCacheSize: number;
  /** The dedup window (falco.dedup_window). */
  windowMs: number;
  log: Logger;
  /** Turns inbox events into alerts; required for accept() and to read back an inbox left by a crash. */
  builder?: FalcoAlertBuilder;
  /** Events per transaction at most; bounds how long one commit holds the loop. */
  maxBatch?: number;
  /** Pending submissions beyond which submit() and accept() refuse work (the caller answers 503). */
  maxQueued?: number;
  /** How long staged occurrences wait at most before they are written (default 500 ms). */
  persistIntervalMs?: number;
  /** Staged events that make the write happen at once (default 20,000); without a window it happens after every batch. */
  maxStaged?: number;
  /** Inbox events not yet written as occurrences beyond which accept() refuses work (default 200,000). */
  maxInbox?: number;
}

export type { AcceptCallback };

interface Pending {
  item: SinkItem;
  resolve: (o: Outcome) => void;
  reject: (e: Error) => void;
}

export class FalcoSink {
  private readonly uuids: FalcoUuids;
  private readonly inboxSink: InboxSink | undefined;
  /** Made once: better-sqlite3 builds four wrapper functions per db.transaction() call. */
  private readonly runTx;
  private queue: Pending[] = [];
  private incoming: InboxPending[] = [];
  private scheduled = false;
  private readonly idle = new Set<() => void>();
  /** close() began: accept() refuses. */
  private stopping = false;
  private closed = false;
  /** The episode of a full spool the Falco inputs wait for: since when, and how many HTTP events were refused in it. */
  private spoolPause: { since: number; refused: number } | undefined;
  private readonly offRoom: (() => void) | undefined;
  /** Inputs waiting for the spool to have room (waitForSpoolRoom). */
  private readonly roomWaiters = new Set<() => void>();

  constructor(
    db: DB,
    private readonly alerts: AlertAdder,
    private readonly opts: FalcoSinkOptions,
  ) {
    this.uuids = new FalcoUuids(db, opts.uuidCacheSize);
    this.runTx = db.transaction((f: () => void) => f());
    const leftInbox = !db.memory && hasInboxFiles(dirname(db.name));
    if (canStage(alerts) && opts.builder) {
      this.inboxSink = new InboxSink(db, alerts.staging('refuse'), this.uuids, {
        windowMs: opts.windowMs,
        log: opts.log,
        builder: opts.builder,
        persistIntervalMs: opts.persistIntervalMs,
        maxStaged: opts.maxStaged,
        spoolFull: () => this.spoolFull,
        onSpoolFull: () => this.noteSpoolFull('http'),
      });
      if (leftInbox) this.inboxSink.replayAtStart();
    } else if (leftInbox) {
      opts.log.warn(
        { data_dir: dirname(db.name) },
        'Falco events stored by the HTTP input are waiting in the inbox (falco-inbox-*.log in the data dir); they become alerts when the falco module runs with falco.http enabled, or delete those files to drop them',
      );
    }
    this.offRoom = alerts.onSpoolRoom?.(() => this.spoolHasRoom());
  }

  /**
   * Whether the spool is full: the inputs hold their events until it has
   * room. Never without onSpoolRoom (a plain-JS adder): nothing would say
   * when to try again, so a refusal takes the retry backoff instead.
   */
  get spoolFull(): boolean {
    return this.offRoom !== undefined && this.alerts.spoolFull === true;
  }

  /** An input found the spool full: logged once per episode (until the spool has room again). */
  noteSpoolFull(input: FalcoInput): void {
    if (this.spoolPause) return;
    this.spoolPause = { since: Date.now(), refused: 0 };
    this.opts.log.warn(
      { input },
      'Alert spool is full: the Falco inputs hold new events until the server acknowledges queued alerts (HTTP answers 503, the file and stdin are not read further, gRPC events wait in memory); nothing already accepted is dropped. Check the connection to the server or raise --spool-max-bytes',
    );
  }

  /**
   * Resolves once the spool has room (at once if it is not full), or when
   * `signal` aborts: an input refused by a full spool waits for this rather
   * than for a backoff, so it writes what it holds as soon as it can.
   */
  waitForSpoolRoom(signal: AbortSignal): Promise<void> {
    if (!this.spoolFull || signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.roomWaiters.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.roomWaiters.add(done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private spoolHasRoom(): void {
    for (const w of [...this.roomWaiters]) w();
    this.inboxSink?.spoolHasRoom();
    const p = this.spoolPause;
    if (!p) return;
    this.spoolPause = undefined;
    this.opts.log.info(
      { paused_ms: Date.now() - p.since, refused_http: p.refused },
      'Alert spool has room again: the Falco inputs take events again and write the ones they held',
    );
  }

  /**
   * Accepts items durably in one transaction, with `after` run inside it.
   * Throws SpoolFullError (nothing stored) while the spool is full: the
   * `input` keeps the events and commits them again later.
   */
  commit(items: readonly SinkItem[], after?: () => void, input: FalcoInput = 'grpc'): Outcome[] {
    if (items.length === 0 && !after) return [];
    const outcomes: Outcome[] = new Array<Outcome>(items.length);
    const fresh: AlertPayload[] = [];
    const mark = this.uuids.mark();
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (!this.uuids.claim(it.uuid)) {
        outcomes[i] = 'duplicate';
        continue;
      }
      outcomes[i] = 'accepted';
      fresh.push(it.alert);
    }
    let written;
    const inTx = () => {
      written = this.uuids.writeInTx();
      after?.();
    };
    try {
      if (fresh.length) this.alerts.add(fresh, this.opts.windowMs, inTx, 'refuse');
      else this.runTx(inTx);
    } catch (e) {
      // A rolled back transaction must not make a retry look like a duplicate.
      this.uuids.rollBack(mark);
      if (isSpoolFull(e)) this.noteSpoolFull(input);
      throw e;
    }
    this.uuids.committed(written!);
    return outcomes;
  }

  /** Queues one item for the next tick's transaction; resolves once it is durable. */
  submit(item: SinkItem): Promise<Outcome> {
    if (this.queued >= (this.opts.maxQueued ?? 50_000)) {
      return Promise.reject(new VerdictError('VERDICT_OVERLOADED', 'the agent has too many Falco events waiting to be stored; retry shortly'));
    }
    return new Promise<Outcome>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Appends one event's raw body to the inbox together with the other events
   * of this event-loop turn; `done` runs once they are stored (or could not
   * be). The event becomes an alert occurrence right after. The caller has
   * checked the builder's skipReason().
   */
  accept(ev: FalcoEvent, body: Buffer, done: AcceptCallback): void {
    if (!this.inboxSink) throw new Error('FalcoSink.accept needs an aggregator that stages and a builder');
    if (!this.stopping && this.spoolFull) {
      this.noteSpoolFull('http');
      this.spoolPause!.refused++;
      falcoEvents.inc({ input: 'http', outcome: 'failed' });
      return done(new SpoolFullError(`${SPOOL_FULL_MESSAGE}; the event was not accepted: send it again later`));
    }
    let refused: string | undefined;
    if (this.stopping) refused = 'the Falco input is stopping; retry shortly';
    else if (this.queued >= (this.opts.maxQueued ?? 50_000)) refused = 'the agent has too many Falco events waiting to be stored; retry shortly';
    else if (this.inboxSink.unwritten >= (this.opts.maxInbox ?? 200_000))
      refused = 'the agent cannot write alerts as fast as Falco events arrive (or its storage is failing); retry shortly';
    if (refused) {
      falcoEvents.inc({ input: 'http', outcome: 'failed' });
      return done(new VerdictError('VERDICT_OVERLOADED', refused));
    }
    this.incoming.push({ ev, body, done });
    this.schedule();
  }

  get queued(): number {
    return this.queue.length + this.incoming.length;
  }

  /** Inbox events answered but whose occurrences are not written yet. */
  get unwritten(): number {
    return this.inboxSink?.unwritten ?? 0;
  }

  /** Resolves when everything submitted so far is stored (or refused). */
  async drain(): Promise<void> {
    if (this.queued === 0 && !this.scheduled) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  /** Resolves when the occurrences of every inbox event are written. */
  async settle(): Promise<void> {
    await this.drain();
    this.inboxSink?.settle();
  }

  /** Stores what is queued and writes the occurrences of every inbox event. */
  async close(): Promise<void> {
    this.stopping = true;
    await this.drain();
    if (this.closed) return;
    this.closed = true;
    this.offRoom?.();
    this.inboxSink?.close();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drainQueues());
  }

  private drainQueues(): void {
    this.scheduled = false;
    const max = this.opts.maxBatch ?? 2_000;
    const incoming = this.incoming;
    const queue = this.queue;
    this.incoming = [];
    this.queue = [];
    for (const batch of batches(incoming, max)) this.inboxSink!.take(batch);
    for (const batch of batches(queue, max)) {
      let outcomes: Outcome[];
      try {
        outcomes = this.commit(batch.map((p) => p.item));
      } catch (e) {
        // A full spool is logged once per episode (commit); the submitter keeps the events and retries.
        if (!isSpoolFull(e)) this.opts.log.error({ error: (e as Error).message, events: batch.length }, STORE_FAILED);
        for (const p of batch) p.reject(e as Error);
        continue;
      }
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(outcomes[i]!);
    }
    // What arrived meanwhile (a callback that queued more) waits for the next turn.
    if (this.queued) return this.schedule();
    for (const f of this.idle) f();
    this.idle.clear();
  }
}

/** `list` in slices of at most `max`, the whole list when it fits. */
function batches<T>(list: T[], max: number): T[][] {
  if (list.length <= max) return list.length ? [list] : [];
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += max) out.push(list.slice(i, i + max));
  return out;
}
