import { dirname } from 'node:path';
import type { Staging } from '../../agent/alerts/aggregator.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { falcoEvents, STORE_FAILED, type Outcome } from './events.js';
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

export interface SinkItem {
  alert: AlertPayload;
  uuid?: string;
}

/** What the sink needs of the aggregator (ctx.alerts) for commit() and submit(). */
export interface AlertAdder {
  /** Durable when it returns; `inTx` runs inside the same transaction. */
  add(alerts: readonly AlertPayload[], windowMs: number, inTx?: () => void): void;
}

/** What the HTTP inbox needs of the aggregator in addition (AlertAggregator has it). */
export interface StagingAlertAdder extends AlertAdder {
  staging(): Staging;
}

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

  constructor(
    db: DB,
    private readonly alerts: AlertAdder,
    private readonly opts: FalcoSinkOptions,
  ) {
    this.uuids = new FalcoUuids(db, opts.uuidCacheSize);
    this.runTx = db.transaction((f: () => void) => f());
    const leftInbox = !db.memory && hasInboxFiles(dirname(db.name));
    if (canStage(alerts) && opts.builder) {
      this.inboxSink = new InboxSink(db, alerts.staging(), this.uuids, {
        windowMs: opts.windowMs,
        log: opts.log,
        builder: opts.builder,
        persistIntervalMs: opts.persistIntervalMs,
        maxStaged: opts.maxStaged,
      });
      if (leftInbox) this.inboxSink.replayAtStart();
    } else if (leftInbox) {
      opts.log.warn(
        { data_dir: dirname(db.name) },
        'Falco events stored by the HTTP input are waiting in the inbox (falco-inbox-*.log in the data dir); they become alerts when the falco module runs with falco.http enabled, or delete those files to drop them',
      );
    }
  }

  /** Accepts items durably in one transaction, with `after` run inside it. */
  commit(items: readonly SinkItem[], after?: () => void): Outcome[] {
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
      if (fresh.length) this.alerts.add(fresh, this.opts.windowMs, inTx);
      else this.runTx(inTx);
    } catch (e) {
      // A rolled back transaction must not make a retry look like a duplicate.
      this.uuids.rollBack(mark);
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
        this.opts.log.error({ error: (e as Error).message, events: batch.length }, STORE_FAILED);
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
