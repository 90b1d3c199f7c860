import { dirname } from 'node:path';
import { Counter } from 'prom-client';
import { foldOccurrence } from '../../shared/alert/fold.js';
import { MAX_SAMPLES, type AlertPayload } from '../../shared/alert/payload.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import { migrate, type DB } from '../../shared/sqlite/open.js';
import type { StagedWriter } from '../../agent/alerts/aggregator.js';
import { FileInbox, hasInboxFiles, MemoryInbox, type Inbox, type InboxPosition } from './inbox.js';
import { FalcoEventError, parseFalcoJson, type FalcoEvent } from './parse.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Where every Falco input hands its events.
//
// HTTP events go through an inbox (inbox.ts): the request's raw body is
// appended to a checksummed file in --data-dir (falco-inbox-<n>.log), with one
// write for every request of the same event-loop turn, and the request is
// answered once that write is done. Only then is the event turned into an
// alert occurrence and staged in the aggregator (in memory); the aggregator
// writes staged occurrences in batches, and in the same SQLite transaction
// this sink records how far into the inbox they came from (falco_inbox_state).
// A crash at any point leaves every answered event either past that position
// in the inbox (read again at start) or in the aggregator's tables, never in
// both and never in neither.
//
// The other inputs (file, stdin, gRPC) hand built alerts to commit(), one
// transaction with the aggregator's writes, the Falcosidekick uuids and
// whatever the input must remember with them (a file offset).

export type FalcoInput = 'http' | 'file' | 'stdin' | 'grpc';
export type Outcome = 'accepted' | 'duplicate';

export const falcoEvents = new Counter({
  name: 'verdict_agent_falco_events_total',
  help: 'Falco events received, by input and outcome (accepted, duplicate, ignored, below_minimum_priority, invalid, failed)',
  labelNames: ['input', 'outcome'],
  registers: [registry],
});

const MIGRATIONS = [
  `CREATE TABLE falco_uuids (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     uuid TEXT NOT NULL UNIQUE
   )`,
  // Lookups moved to memory: a unique index on random uuids cost one random
  // B-tree page write per event, more than the rest of the HTTP path together.
  // The table is now an append-only log of the recent set, read at start.
  `CREATE TABLE falco_uuids_log (seq INTEGER PRIMARY KEY, uuid TEXT NOT NULL);
   INSERT INTO falco_uuids_log (seq, uuid) SELECT seq, uuid FROM falco_uuids;
   DROP TABLE falco_uuids;
   ALTER TABLE falco_uuids_log RENAME TO falco_uuids;`,
];

const INBOX_MIGRATIONS = [
  // How far the HTTP inbox (inbox.ts) has been turned into written occurrences.
  `CREATE TABLE falco_inbox_state (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     gen INTEGER NOT NULL,
     offset INTEGER NOT NULL
   )`,
];

/** What the sink needs of the aggregator (ctx.alerts) for commit() and submit(). */
export interface AlertAdder {
  /** Durable when it returns; `inTx` runs inside the same transaction. */
  add(alerts: readonly AlertPayload[], windowMs: number, inTx?: () => void): void;
}

/** What the HTTP inbox needs of the aggregator in addition: staging (AlertAggregator has it). */
export interface StagingAlertAdder extends AlertAdder {
  stage(alerts: readonly AlertPayload[], windowMs: number): void;
  persist(): void;
  attach(writer: StagedWriter): () => void;
}

function canStage(a: AlertAdder): a is StagingAlertAdder {
  const s = a as Partial<StagingAlertAdder>;
  return typeof s.stage === 'function' && typeof s.persist === 'function' && typeof s.attach === 'function';
}

export interface SinkItem {
  alert: AlertPayload;
  uuid?: string;
}

export interface FalcoSinkOptions {
  /** Remembered Falcosidekick uuids; 0 turns idempotency off. */
  uuidCacheSize: number;
  /**
   * The dedup window (falco.dedup_window). With a non-zero window repeats inside
   * one batch are folded before the aggregator sees them: it would fold them
   * anyway, and one upsert per fingerprint is much cheaper than one per event.
   */
  windowMs: number;
  log: Logger;
  /** Turns inbox events into alerts; required for accept() and to read back an inbox left by a crash. */
  builder?: FalcoAlertBuilder;
  /** Events per transaction at most; bounds how long one commit holds the loop. */
  maxBatch?: number;
  /** Pending submissions beyond which submit() and accept() refuse work (the caller answers 503). */
  maxQueued?: number;
  /** How long staged occurrences wait at most before the aggregator writes them (default 500 ms). */
  persistIntervalMs?: number;
  /** Staged events that make the aggregator write at once (default 20,000); without a window it writes after every batch. */
  maxStaged?: number;
  /** Inbox events not yet written as occurrences beyond which accept() refuses work (default 200,000). */
  maxInbox?: number;
}

export type AcceptCallback = (err: Error | undefined, outcome?: Outcome) => void;

interface Pending {
  item: SinkItem;
  resolve: (o: Outcome) => void;
  reject: (e: Error) => void;
}

interface InboxPending {
  ev: FalcoEvent;
  body: Buffer;
  done: AcceptCallback;
}

/** A Falcosidekick uuid of an inbox event, written to falco_uuids with the event's occurrences. */
interface PendingUuid {
  seq: number;
  uuid: string;
  /** The inbox event it came with. */
  event: number;
}

export class SinkOverloadedError extends Error {
  readonly code = 'VERDICT_FALCO_OVERLOADED';
}

/**
 * The recent Falcosidekick uuids, oldest first, each with the seq of its row in
 * falco_uuids. Lookups are in memory; the table is an append-only log of the
 * set, read at start.
 */
class RecentUuids {
  private readonly seen = new Set<string>();
  private uuids: string[] = [];
  private seqs: number[] = [];
  private head = 0;
  private nextSeq = 1;

  constructor(rows: readonly { seq: number; uuid: string }[]) {
    for (const r of rows) {
      this.seen.add(r.uuid);
      this.uuids.push(r.uuid);
      this.seqs.push(r.seq);
    }
    if (rows.length) this.nextSeq = rows[rows.length - 1]!.seq + 1;
  }

  has(uuid: string): boolean {
    return this.seen.has(uuid);
  }

  /** Remembers a uuid; returns the seq of its row. */
  add(uuid: string): number {
    this.seen.add(uuid);
    this.uuids.push(uuid);
    this.seqs.push(this.nextSeq);
    return this.nextSeq++;
  }

  /** Forgets the `n` uuids added last (their transaction rolled back). */
  undo(n: number): void {
    for (let i = 0; i < n; i++) {
      this.seen.delete(this.uuids.pop()!);
      this.seqs.pop();
      this.nextSeq--;
    }
  }

  /** The oldest seq still remembered: rows below it are forgotten. */
  get oldest(): number {
    return this.head < this.seqs.length ? this.seqs[this.head]! : this.nextSeq;
  }

  /** How many of the oldest to forget to keep `cap` (in steps, so the delete is rare), and the first seq kept. */
  trimPlan(cap: number): { n: number; keepFrom: number } | undefined {
    const over = this.uuids.length - this.head - cap;
    // In steps, so the delete is rare, and small, so it never holds the loop long.
    if (over < Math.max(1, Math.min(Math.floor(cap / 10), 1024))) return undefined;
    return { n: over, keepFrom: this.head + over < this.seqs.length ? this.seqs[this.head + over]! : this.nextSeq };
  }

  forget(n: number): void {
    for (let i = 0; i < n; i++) this.seen.delete(this.uuids[this.head + i]!);
    this.head += n;
    if (this.head > 4096 && this.head * 2 > this.uuids.length) {
      this.uuids = this.uuids.slice(this.head);
      this.seqs = this.seqs.slice(this.head);
      this.head = 0;
    }
  }
}

const REPLAY_CHUNK = 1_000;
const ERROR_LOG_INTERVAL_MS = 60_000;
const START: InboxPosition = { gen: 0, offset: 0 };

export class FalcoSink implements StagedWriter {
  private readonly insertUuid;
  private readonly trimUuids;
  private readonly saveInboxState;
  // Made once: better-sqlite3 builds four wrapper functions per db.transaction() call.
  private readonly runTx;
  private readonly uuids: RecentUuids;
  /** uuids of inbox events not yet in falco_uuids, from pendingHead (written each turn, or with the occurrences at the latest). */
  private pendingUuids: PendingUuid[] = [];
  private pendingHead = 0;
  private queue: Pending[] = [];
  private incoming: InboxPending[] = [];
  private scheduled = false;
  private readonly idle = new Set<() => void>();
  private readonly stager: StagingAlertAdder | undefined;
  private detach: (() => void) | undefined;
  private store: Inbox | undefined;
  /**
   * Inbox events are numbered in memory: the last appended; every one up to
   * stagedSeq is staged in the aggregator; every one up to persistedSeq has
   * its occurrences written. Positions are where in the inbox files they end.
   */
  private lastSeq = 0;
  private stagedSeq = 0;
  private persistedSeq = 0;
  private writingSeq = 0;
  private stagedPos: InboxPosition = START;
  private persistedPos: InboxPosition = START;
  private writingPos: InboxPosition = START;
  private writingUuids = 0;
  private writingTrim: { n: number; keepFrom: number } | undefined;
  private stagedEvents = 0;
  private replaying = false;
  private inCommit = false;
  private persistTimer: NodeJS.Timeout | undefined;
  private persistSoon = false;
  private lastErrorLog = 0;
  /** close() began: accept() refuses; closed: detached, nothing is staged any more. */
  private stopping = false;
  private closed = false;

  constructor(private readonly db: DB, private readonly alerts: AlertAdder, private readonly opts: FalcoSinkOptions) {
    migrate(db, 'falco_uuids', MIGRATIONS);
    migrate(db, 'falco_inbox', INBOX_MIGRATIONS);
    this.insertUuid = db.prepare('INSERT INTO falco_uuids (seq, uuid) VALUES (?, ?)');
    this.trimUuids = db.prepare('DELETE FROM falco_uuids WHERE seq < ?');
    this.saveInboxState = db.prepare('INSERT INTO falco_inbox_state (id, gen, offset) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET gen = excluded.gen, offset = excluded.offset');
    this.runTx = db.transaction((f: () => void) => f());
    this.uuids = new RecentUuids(db.prepare('SELECT seq, uuid FROM falco_uuids ORDER BY seq').all() as { seq: number; uuid: string }[]);
    this.stager = canStage(alerts) ? alerts : undefined;

    const state = db.prepare('SELECT gen, offset FROM falco_inbox_state WHERE id = 1').get() as InboxPosition | undefined;
    this.stagedPos = this.persistedPos = this.writingPos = state ? { gen: state.gen, offset: state.offset } : START;
    if (!db.memory && hasInboxFiles(dirname(db.name)) && (!this.stager || !opts.builder)) {
      opts.log.warn({ data_dir: dirname(db.name) }, 'Falco events stored by the HTTP input are waiting in the inbox (falco-inbox-*.log in the data dir); they become alerts when the falco module runs with falco.http enabled, or delete those files to drop them');
      this.stopping = this.closed = true;
      return;
    }
    if (this.stager) this.detach = this.stager.attach(this);
    if (this.detach && !db.memory && hasInboxFiles(dirname(db.name))) {
      // What a crash left between answering and writing the occurrences.
      this.replaying = true;
      while (this.replayStep(true)) { /* until caught up */ }
      if (this.lastSeq) {
        opts.log.info({ events: this.lastSeq }, 'Turned Falco events stored before the restart into alerts');
        this.persistNow();
      }
    }
  }

  /** Accepts items durably in one transaction, with `after` run inside it. */
  commit(items: readonly SinkItem[], after?: () => void): Outcome[] {
    if (items.length === 0 && !after) return [];
    const outcomes: Outcome[] = new Array<Outcome>(items.length);
    const fresh: AlertPayload[] = [];
    const rows: [number, string][] = [];
    const idempotent = this.opts.uuidCacheSize > 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      if (idempotent && it.uuid !== undefined) {
        if (this.uuids.has(it.uuid)) {
          outcomes[i] = 'duplicate';
          continue;
        }
        rows.push([this.uuids.add(it.uuid), it.uuid]);
      }
      outcomes[i] = 'accepted';
      fresh.push(it.alert);
    }
    let trim: { n: number; keepFrom: number } | undefined;
    const inTx = () => {
      for (const [seq, uuid] of rows) this.insertUuid.run(seq, uuid);
      trim = this.trimInTx();
      after?.();
    };
    // The aggregator may call write() in the same transaction: one trim is enough.
    this.inCommit = true;
    try {
      if (fresh.length) this.alerts.add(this.opts.windowMs > 0 ? foldRepeats(fresh) : fresh, this.opts.windowMs, inTx);
      else this.runTx(inTx);
    } catch (e) {
      // A rolled back transaction must not make a retry look like a duplicate.
      this.uuids.undo(rows.length);
      throw e;
    } finally {
      this.inCommit = false;
    }
    if (trim) this.uuids.forget(trim.n);
    return outcomes;
  }

  /** Queues one item for the next tick's transaction; resolves once it is durable. */
  submit(item: SinkItem): Promise<Outcome> {
    if (this.queued >= (this.opts.maxQueued ?? 50_000)) {
      return Promise.reject(new SinkOverloadedError('the agent has too many Falco events waiting to be stored; retry shortly'));
    }
    return new Promise<Outcome>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /**
   * Appends one event's raw body to the inbox together with the other events
   * of this event-loop turn; `done` runs once they are stored (or could not
   * be). The event becomes an alert occurrence right after.
   */
  accept(ev: FalcoEvent, body: Buffer, done: AcceptCallback): void {
    if (!this.stager || !this.opts.builder) throw new Error('FalcoSink.accept needs an aggregator that stages and a builder');
    let refused: string | undefined;
    if (this.stopping) refused = 'the Falco input is stopping; retry shortly';
    else if (this.queued >= (this.opts.maxQueued ?? 50_000)) refused = 'the agent has too many Falco events waiting to be stored; retry shortly';
    else if (this.lastSeq - this.persistedSeq >= (this.opts.maxInbox ?? 200_000)) refused = 'the agent cannot write alerts as fast as Falco events arrive (or its storage is failing); retry shortly';
    if (refused) {
      falcoEvents.inc({ input: 'http', outcome: 'failed' });
      return done(new SinkOverloadedError(refused));
    }
    this.incoming.push({ ev, body, done });
    this.schedule();
  }

  get queued(): number {
    return this.queue.length + this.incoming.length;
  }

  /** Inbox events answered but whose occurrences are not written yet. */
  get unwritten(): number {
    return this.lastSeq - this.persistedSeq;
  }

  /** Resolves when everything submitted so far is stored (or refused). */
  async drain(): Promise<void> {
    if (this.queued === 0 && !this.scheduled) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  /** Resolves when the occurrences of every inbox event are written. */
  async settle(): Promise<void> {
    await this.drain();
    while (this.replaying) this.replayStep(false);
    this.persistNow();
  }

  /** Stores what is queued, writes the staged occurrences and detaches from the aggregator. */
  async close(): Promise<void> {
    this.stopping = true;
    await this.drain();
    if (this.closed) return;
    while (this.replaying) this.replayStep(false);
    // If this write fails the aggregator forgets what was staged and the events
    // stay in the inbox for the next start.
    this.persistNow();
    this.closed = true;
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    this.detach?.();
    this.detach = undefined;
    this.store?.close();
    this.store = undefined;
  }

  // StagedWriter: called by the aggregator inside and after its transactions.

  write(): void {
    this.writingSeq = this.stagedSeq;
    this.writingPos = this.stagedPos;
    this.writingUuids = 0;
    this.writingTrim = undefined;
    if (this.stagedSeq <= this.persistedSeq) return;
    this.saveInboxState.run(this.stagedPos.gen, this.stagedPos.offset);
    const oldest = this.uuids.oldest;
    let i = this.pendingHead;
    for (; i < this.pendingUuids.length && this.pendingUuids[i]!.event <= this.stagedSeq; i++) {
      const p = this.pendingUuids[i]!;
      if (p.seq >= oldest) this.insertUuid.run(p.seq, p.uuid);
    }
    this.writingUuids = i - this.pendingHead;
    if (!this.inCommit) this.writingTrim = this.trimInTx();
  }

  committed(): void {
    if (this.writingSeq <= this.persistedSeq) return;
    this.persistedSeq = this.writingSeq;
    this.persistedPos = this.writingPos;
    this.stagedEvents = 0;
    this.pendingHead += this.writingUuids;
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pendingUuids.length) {
      this.pendingUuids = this.pendingUuids.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    if (this.writingTrim) this.uuids.forget(this.writingTrim.n);
    try {
      this.store?.release(this.persistedPos);
    } catch (e) {
      this.opts.log.warn({ error: (e as Error).message }, 'Could not remove a consumed Falco inbox file; it is removed at the next start');
    }
  }

  rolledBack(): void {
    // The occurrences staged since the last write are gone from memory; their
    // events are still in the inbox: read them again from there.
    this.stagedSeq = this.persistedSeq;
    this.stagedPos = this.persistedPos;
    this.stagedEvents = 0;
    if (!this.replaying && !this.closed) {
      this.replaying = true;
      // Not at once: if the storage is failing, the next write fails too.
      setTimeout(() => this.replayLoop(), this.opts.persistIntervalMs ?? 500).unref();
    }
  }

  private get inbox(): Inbox {
    return (this.store ??= this.db.memory ? new MemoryInbox() : new FileInbox(dirname(this.db.name), this.persistedPos, () => this.db.open));
  }

  /** Inside a transaction: forgets the oldest uuids beyond the bound (applied to memory after the commit). */
  private trimInTx(): { n: number; keepFrom: number } | undefined {
    const plan = this.uuids.trimPlan(this.opts.uuidCacheSize);
    if (plan) this.trimUuids.run(plan.keepFrom);
    return plan;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drainQueues());
  }

  private drainQueues(): void {
    this.scheduled = false;
    const max = this.opts.maxBatch ?? 2_000;
    while (this.incoming.length) {
      const batch = this.incoming.length <= max ? this.incoming : this.incoming.slice(0, max);
      this.incoming = this.incoming.length <= max ? [] : this.incoming.slice(max);
      this.storeIncoming(batch);
    }
    while (this.queue.length) {
      const batch = this.queue.length <= max ? this.queue : this.queue.slice(0, max);
      this.queue = this.queue.length <= max ? [] : this.queue.slice(max);
      let outcomes: Outcome[];
      try {
        outcomes = this.commit(batch.map((p) => p.item));
      } catch (e) {
        this.opts.log.error({ error: (e as Error).message, events: batch.length }, 'Failed to store Falco events; senders get 503 until it works again: check free space and permissions of the agent\'s --data-dir');
        for (const p of batch) p.reject(e as Error);
        continue;
      }
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(outcomes[i]!);
    }
    for (const f of this.idle) f();
    this.idle.clear();
  }

  /** One append for the batch, then the answers, then the alerts. */
  private storeIncoming(batch: InboxPending[]): void {
    const outcomes: Outcome[] = new Array<Outcome>(batch.length);
    const bodies: Buffer[] = [];
    const pendingBefore = this.pendingUuids.length;
    const idempotent = this.opts.uuidCacheSize > 0;
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i]!;
      const uuid = p.ev.uuid;
      if (idempotent && uuid !== undefined) {
        if (this.uuids.has(uuid)) {
          outcomes[i] = 'duplicate';
          continue;
        }
        this.pendingUuids.push({ seq: this.uuids.add(uuid), uuid, event: this.lastSeq + bodies.length + 1 });
      }
      outcomes[i] = 'accepted';
      bodies.push(p.body);
    }
    let end: InboxPosition | undefined;
    if (bodies.length) {
      try {
        end = this.inbox.append(bodies);
      } catch (e) {
        const added = this.pendingUuids.length - pendingBefore;
        this.uuids.undo(added);
        this.pendingUuids.length = pendingBefore;
        this.opts.log.error({ error: (e as Error).message, events: batch.length }, 'Failed to store Falco events; senders get 503 until it works again: check free space and permissions of the agent\'s --data-dir');
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
    for (let i = 0; i < batch.length; i++) {
      if (outcomes[i] !== 'accepted') continue;
      const a = this.buildAlert(batch[i]!.ev);
      if (a) alerts.push(a);
    }
    this.stageUpTo(alerts, this.lastSeq, end);
    this.writeUuidsNow();
  }

  /**
   * Writes the new uuids in a small transaction of their own, so that the
   * write of the occurrences (which would write them otherwise) stays short.
   * A uuid is safe in the inbox already; this only moves it to falco_uuids.
   */
  private writeUuidsNow(): void {
    if (this.pendingHead >= this.pendingUuids.length) return;
    let trim: { n: number; keepFrom: number } | undefined;
    const end = this.pendingUuids.length;
    try {
      this.runTx(() => {
        const oldest = this.uuids.oldest;
        for (let i = this.pendingHead; i < end; i++) {
          const p = this.pendingUuids[i]!;
          if (p.seq >= oldest) this.insertUuid.run(p.seq, p.uuid);
        }
        trim = this.trimInTx();
      });
    } catch {
      return; // written with the occurrences instead
    }
    this.pendingHead = end;
    if (this.pendingHead > 4096 && this.pendingHead * 2 > this.pendingUuids.length) {
      this.pendingUuids = this.pendingUuids.slice(this.pendingHead);
      this.pendingHead = 0;
    }
    if (trim) this.uuids.forget(trim.n);
  }

  private buildAlert(ev: FalcoEvent): AlertPayload | undefined {
    try {
      const r = this.opts.builder!.build(ev);
      if (r.skipped) falcoEvents.inc({ input: 'http', outcome: r.skipped });
      return r.alert;
    } catch (e) {
      // Not expected: build() takes any parsed event. The event is dropped rather than retried forever.
      this.opts.log.error({ error: (e as Error).message, rule: ev.rule }, 'Failed to turn a stored Falco event into an alert; it is dropped');
      return undefined;
    }
  }

  private stageUpTo(alerts: AlertPayload[], seq: number, pos: InboxPosition): void {
    if (alerts.length) this.stager!.stage(alerts, this.opts.windowMs);
    this.stagedSeq = seq;
    this.stagedPos = pos;
    this.stagedEvents += alerts.length;
    if (!this.replaying) this.schedulePersist();
  }

  private schedulePersist(): void {
    // Without a window there is nothing to fold: the alerts go to the spool at once.
    if (this.opts.windowMs <= 0) return this.persistNow();
    if (this.stagedEvents >= (this.opts.maxStaged ?? 20_000)) {
      if (!this.persistSoon) {
        this.persistSoon = true;
        setImmediate(() => this.persistNow());
      }
    } else if (!this.persistTimer) {
      this.persistTimer = setTimeout(() => this.persistNow(), this.opts.persistIntervalMs ?? 500);
      this.persistTimer.unref();
    }
  }

  /** Has the aggregator write what is staged (it calls write() inside that transaction). */
  private persistNow(): void {
    this.persistSoon = false;
    if (this.persistTimer) clearTimeout(this.persistTimer);
    this.persistTimer = undefined;
    if (!this.stager || this.stagedSeq <= this.persistedSeq) return;
    try {
      this.stager.persist();
    } catch (e) {
      const now = Date.now();
      if (now - this.lastErrorLog >= ERROR_LOG_INTERVAL_MS) {
        this.lastErrorLog = now;
        this.opts.log.error({ error: (e as Error).message, events: this.lastSeq - this.persistedSeq }, 'Failed to write alerts for stored Falco events; they stay in the inbox and are retried');
      }
    }
  }

  /**
   * Stages the next inbox events not staged yet; false when caught up. At
   * start (`fresh`) the events are new to this process: they are counted and
   * their uuids remembered.
   */
  private replayStep(fresh: boolean): boolean {
    const records = this.inbox.read(this.stagedPos, REPLAY_CHUNK);
    const alerts: AlertPayload[] = [];
    let seq = this.stagedSeq;
    for (const r of records) {
      seq++;
      let ev: FalcoEvent;
      try {
        ev = parseFalcoJson(r.body.toString('utf8'));
      } catch (e) {
        falcoEvents.inc({ input: 'http', outcome: 'invalid' });
        this.opts.log.error({ error: e instanceof FalcoEventError ? e.message : String(e) }, 'Dropped a stored Falco event that cannot be read back');
        continue;
      }
      if (fresh && ev.uuid !== undefined && this.opts.uuidCacheSize > 0 && !this.uuids.has(ev.uuid)) {
        this.pendingUuids.push({ seq: this.uuids.add(ev.uuid), uuid: ev.uuid, event: seq });
      }
      const a = this.buildAlert(ev);
      if (a) alerts.push(a);
    }
    if (fresh) this.lastSeq = Math.max(this.lastSeq, seq);
    if (records.length) this.stageUpTo(alerts, seq, records[records.length - 1]!.end);
    if (records.length < REPLAY_CHUNK) {
      // Caught up: events stored from now on are staged as they come.
      this.replaying = false;
      return false;
    }
    return true;
  }

  private replayLoop(): void {
    if (!this.replaying || this.closed) return;
    if (this.replayStep(false)) setImmediate(() => this.replayLoop());
    else this.schedulePersist();
  }
}

/** Folds occurrences with the same fingerprint into one with a count, as the aggregator would. */
export function foldRepeats(alerts: readonly AlertPayload[]): AlertPayload[] {
  if (alerts.length < 2) return alerts as AlertPayload[];
  const byFp = new Map<string, AlertPayload>();
  for (const a of alerts) {
    const g = byFp.get(a.fingerprint);
    if (!g) {
      byFp.set(a.fingerprint, a);
      continue;
    }
    Object.assign(g, foldOccurrence(g, a).summary);
    for (const s of a.samples) {
      if (g.samples.length >= MAX_SAMPLES) break;
      g.samples.push(s);
    }
  }
  return byFp.size === alerts.length ? (alerts as AlertPayload[]) : [...byFp.values()];
}

/**
 * Turns JSON lines (file_output, program_output) into sink items, counting and
 * reporting the lines that are not Falco events. Reports at most one line per
 * minute so a misconfigured Falco cannot flood the log.
 */
export class LineDecoder {
  private lastWarn = 0;
  private suppressed = 0;

  constructor(private readonly input: FalcoInput, private readonly builder: FalcoAlertBuilder, private readonly log: Logger) {}

  decode(lines: readonly string[]): SinkItem[] {
    const items: SinkItem[] = [];
    for (const line of lines) {
      if (line.trim() === '') continue;
      let ev;
      try {
        ev = parseFalcoJson(line);
      } catch (e) {
        falcoEvents.inc({ input: this.input, outcome: 'invalid' });
        this.warn(e instanceof FalcoEventError ? e.message : String(e), line);
        continue;
      }
      const r = this.builder.build(ev);
      if (r.skipped) {
        falcoEvents.inc({ input: this.input, outcome: r.skipped });
        continue;
      }
      items.push({ alert: r.alert, uuid: ev.uuid });
    }
    return items;
  }

  private warn(reason: string, line: string): void {
    const now = Date.now();
    if (now - this.lastWarn < 60_000) {
      this.suppressed++;
      return;
    }
    this.log.warn({ input: this.input, reason, line: line.slice(0, 200), suppressed: this.suppressed }, 'Skipped a line that is not a Falco JSON event; check json_output: true in falco.yaml');
    this.lastWarn = now;
    this.suppressed = 0;
  }
}

export function countOutcomes(input: FalcoInput, outcomes: readonly Outcome[]): void {
  let accepted = 0;
  let dup = 0;
  for (const o of outcomes) o === 'accepted' ? accepted++ : dup++;
  if (accepted) falcoEvents.inc({ input, outcome: 'accepted' }, accepted);
  if (dup) falcoEvents.inc({ input, outcome: 'duplicate' }, dup);
}
