// Before kafkajs loads: it keeps the CRC function it finds then.
import './kafkajs-tuning.js';
import kafkajs from 'kafkajs';
import type { Admin, Consumer, EachBatchPayload, Kafka as KafkaClient, PartitionAssigner } from 'kafkajs';
import { Counter } from 'prom-client';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { kafkaRegistry } from './metrics.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStore, StoredAlert } from '../store/alert-store.js';
import type { KeyedAlert, SharedClaim } from '../webhooks/outbox.js';
import { relaunchUntilRunning, runOrThrow, waitWhileHeld } from './relaunch.js';
import { explainKafkaError, retrying } from './client.js';
import { MAX_SAMPLES } from '../../shared/alert/payload.js';
import { encodeClaimsEvent, exportedAlert, HEADER_REF, HEADER_TYPE, logRefs, parseAlertUid, type ExportedAlert } from './messages.js';
import type { LogWriter, OutMessage } from './producer.js';
import type { Projection } from './projection.js';

const { AssignerProtocol } = kafkajs;

const handled = new Counter({
  name: 'verdict_kafka_delivery_changes_total',
  help: 'Alert changes this replica handed to webhooks and the export, for the log partitions it owns',
  labelNames: ['result'],
  registers: [kafkaRegistry],
});

/**
 * Where deliveries are recorded: the webhook outbox of this replica's
 * database (Outbox.enqueueShared). Its claims make a change delivered once
 * per integration; the claims are published to the log (a `claims` message in
 * the partition of the changes) and every replica's projection takes them
 * over (applyClaims), so the next owner of a partition knows them too.
 * Webhook-ids are derived from integration, alert uid and event, so a change
 * recorded by two replicas goes out under one webhook-id.
 */
export interface WebhookEnqueuer {
  enqueueShared(alerts: readonly KeyedAlert[]): { deliveries: number; claims: SharedClaim[] };
  /** False while no integration is active: alerts need not be described for webhooks. */
  active?(): boolean;
  applyClaims(claims: readonly SharedClaim[], alertId: (uid: string) => number | undefined): number;
}

/**
 * Steps of a hand-on that records webhook deliveries, between which a crash
 * costs something different (docs/kafka.md). `after_outbox`: the deliveries
 * are committed in the outbox, their claims are not in the log yet.
 * `after_claims`: the claims are in the log, the group offset is not committed.
 */
export const DELIVERY_STEPS = ['after_outbox', 'after_claims'] as const;
export type DeliveryStep = (typeof DELIVERY_STEPS)[number];
/** Told each step of a hand-on that recorded deliveries (the crash test stops the process there). */
export type DeliveryStepHook = (step: DeliveryStep, at: { partition: number; offset: string }) => void;

/** Claims per log message at most (about 200 bytes each; a message stays far below 1 MB). */
const CLAIMS_PER_MESSAGE = 1000;

/**
 * Partitions go round-robin over the members sorted by replica id, not by
 * kafkajs member id. Member ids change whenever a member rejoins (after a
 * broker restart, say), which with the stock assigner can swap partitions
 * between replicas; a replica that gets a partition back from itself finds
 * its own webhook claims and sends nothing twice, another replica would not.
 */
export function stableAssigner(replica: string): PartitionAssigner {
  return ({ cluster }) => ({
    name: 'VerdictStableAssigner',
    version: 1,
    async assign({ members, topics }) {
      const sorted = members
        .map((m) => ({ memberId: m.memberId, replica: AssignerProtocol.MemberMetadata.decode(m.memberMetadata)?.userData.toString('utf8') ?? '' }))
        .sort((a, b) => (a.replica < b.replica ? -1 : a.replica > b.replica ? 1 : a.memberId < b.memberId ? -1 : 1));
      const out = new Map<string, Record<string, number[]>>(sorted.map((m) => [m.memberId, {}]));
      for (const topic of topics) {
        const partitions = cluster
          .findTopicPartitionMetadata(topic)
          .map((m) => m.partitionId)
          .sort((a, b) => a - b);
        for (const p of partitions) {
          const a = out.get(sorted[p % sorted.length]!.memberId)!;
          (a[topic] ??= []).push(p);
        }
      }
      return [...out].map(([memberId, assignment]) => ({
        memberId,
        memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 1, assignment, userData: Buffer.alloc(0) }),
      }));
    },
    protocol({ topics }) {
      return { name: 'VerdictStableAssigner', metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: Buffer.from(replica) }) };
    },
  });
}

export interface DeliveryOptions {
  kafka: KafkaClient;
  cfg: KafkaConfig;
  db: DB;
  store: AlertStore;
  projection: Projection;
  writer: LogWriter;
  logTopic: string;
  exportTopic: string;
  groupId: string;
  replica: string;
  webhooks?: WebhookEnqueuer | undefined;
  log: Logger;
  /** Tests only: nothing is handed on until this resolves (a member running behind the projection). */
  hold?: Promise<void> | undefined;
  /** Tests only: see DeliveryStepHook. */
  onStep?: DeliveryStepHook | undefined;
  /** How old the member's metadata may get: the group assigns partitions added to the log once its leader's shows them (PARTITION_CHECK_MS). */
  metadataMaxAge?: number | undefined;
}

/** An alert's newest change waiting for the export window; serialised only when the window closes. */
interface PendingExport {
  alert: StoredAlert;
  uid: string;
  change: ExportedAlert['change'];
  /** Set when earlier changes of the window carried samples over: the samples to export instead of the alert's (newest last, at most MAX_SAMPLES); this export's own array. */
  samples: unknown[] | undefined;
}

/** Log messages handed on per flush at most. */
const FLUSH_EVERY = 5000;
/**
 * The window changes are coalesced over: the member fetches the log at most
 * this often unless WINDOW_BYTES are waiting, so an alert that changes
 * several times in it is described, exported and routed once, and the
 * export goes out in few produce requests.
 */
const WINDOW_MS = 500;
const WINDOW_BYTES = 4 * 1024 * 1024;
/** A failed export is tried again this much later when there is no window to wait for. */
const RETRY_MS = 2000;
/** A closed window waits this long for a fetched batch to flush it (the member fetches every WINDOW_MS). */
const IDLE_MS = 3 * WINDOW_MS;
/** Coalesced exports waiting at most; past it they go out before more is handed on. */
const EXPORT_MAX = 20_000;
const SEEN_MAX = 50_000;

/**
 * Keeps `x` as its alert's export, in place of an earlier change of the same
 * alert (true then): one message for both, the earlier one's samples carried
 * over. The newest change goes last, so the window's messages keep change order.
 */
function keepNewest(exports: Map<string, PendingExport>, x: PendingExport): boolean {
  const prev = exports.get(x.uid);
  if (prev) {
    const own = x.samples ?? x.alert.samples;
    const before = prev.samples ?? prev.alert.samples;
    if (own.length < MAX_SAMPLES && before.length) {
      // One array per alert and window, taken over from change to change: a
      // copy of the alert (and two arrays) per coalesced change was most of
      // what delivery allocated, in a window where each alert changes often.
      const carried = prev.samples ?? before.slice();
      for (const v of own) carried.push(v);
      if (carried.length > MAX_SAMPLES) carried.splice(0, carried.length - MAX_SAMPLES);
      x.samples = carried;
    }
    exports.delete(x.uid);
  }
  exports.set(x.uid, x);
  return prev !== undefined;
}

/**
 * The work done once per alert change across all replicas: webhook deliveries
 * and the export topic. Replicas share it in one consumer group over the log;
 * the member that owns a partition handles its changes, after its own
 * projection has stored them, and commits the group offset after recording
 * the deliveries, publishing their claims to the log and producing the
 * export. A member that dies between those steps leaves the last changes to
 * the next owner, which first takes over the claims in the log (so what was
 * recorded and published is not recorded again) and hands on the rest again:
 * at least once, under the same webhook-ids (see docs/kafka.md).
 */
export class DeliveryGroup {
  private consumer: Consumer | undefined;
  private readonly abort = new AbortController();
  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }
  /** Alert id -> change counter (seq) last handed on: several events read in one go make one change. */
  private readonly seen = new Map<number, number>();
  private readonly log: Logger;
  /** Set when the group had no offsets at start-up: where its first members begin. */
  private initialEnds: Map<number, string> | undefined;
  /** Partitions assigned at the last join that have not been synced with the claims in the log yet. */
  private readonly fresh = new Set<number>();
  /** Claims recorded in the outbox whose publishing failed, per partition: published with the next hand-on. */
  private readonly unpublished = new Map<number, SharedClaim[]>();
  /** Per partition: exports waiting for the window (alert uid -> its newest change) and the last offset handed on, not committed yet. */
  private pending = new Map<number, { exports: Map<string, PendingExport>; upto: number }>();
  private pendingExports = 0;
  /** Closes the export window: set when something is handed on and nothing is waiting yet. */
  private windowTimer: NodeJS.Timeout | undefined;
  /** The window has closed: the next fetched batch flushes at its end (or the idle check, if none comes). */
  private due = false;
  /** Between kafkajs starting a rejoin and the join: the assignment is about to change. */
  private rebalancing = false;
  private flushing: Promise<void> | undefined;
  /**
   * The export window (kafka.export_window): an alert's changes in it are
   * exported once, as the alert stands at its end. Noisy alerts (a repeat
   * every few seconds) make most of the export's messages and of its cost;
   * a SIEM reading the topic gets each alert's current state a few seconds
   * later instead of every step. The group offsets of what was handed on
   * are committed once the window's exports are in Kafka (at least once: a
   * member that dies before the commit leaves the changes to the next owner,
   * which exports them again).
   */
  private readonly windowMs: number;

  constructor(private readonly o: DeliveryOptions) {
    this.log = o.log;
    this.windowMs = o.exportTopic ? o.cfg.export_window : 0;
  }

  async start(admin: Admin): Promise<void> {
    await this.initOffsets(admin).catch((e: unknown) => {
      throw new Error(explainKafkaError(e, this.o.cfg, this.o.logTopic));
    });
  }

  /** Joins the delivery group (start() first: a new group's offsets are read before agents may send). */
  async join(): Promise<void> {
    try {
      await this.launch();
    } catch (e) {
      throw new Error(explainKafkaError(e, this.o.cfg, this.o.logTopic));
    }
  }

  /** Handed on up to `upto` in `partition`, with these exports: they go out with the window, then the offset is committed. */
  private handedOn(partition: number, upto: number, exports: readonly PendingExport[]): void {
    let e = this.pending.get(partition);
    if (!e) this.pending.set(partition, (e = { exports: new Map(), upto }));
    if (upto > e.upto) e.upto = upto;
    for (const x of exports) if (!keepNewest(e.exports, x)) this.pendingExports++;
    this.openWindow();
  }

  /**
   * Starts the export window if none is open; it closes `ms` later. The
   * flush then happens at the end of the next fetched batch, where this
   * member surely owns its partitions: flushed from the timer, a rebalance
   * could hand the partitions to the next owner before the commit, and it
   * would export the same changes again. When no batch comes (an idle log)
   * the timer flushes after IDLE_MS, unless a rejoin is under way. Without
   * a window each batch flushes at its end, and this only retries a flush
   * that failed.
   */
  private openWindow(ms = this.windowMs): void {
    if (this.windowTimer || this.due || ms === 0 || this.stopped) return;
    this.windowTimer = setTimeout(() => {
      this.windowTimer = undefined;
      this.due = true;
      this.idleCheck();
    }, ms);
    this.windowTimer.unref();
  }

  private idleCheck(): void {
    this.windowTimer = setTimeout(() => {
      this.windowTimer = undefined;
      if (!this.due || this.stopped) return;
      if (this.rebalancing) this.idleCheck();
      else
        this.flushDue().catch((err: unknown) => {
          // A timer has no caller to hand this to; the window's changes are kept (flushNow) for the next one.
          this.log.warn({ error: errText(err) }, 'Kafka: flushing the export window failed; it is tried again with the next window');
          this.openWindow(this.windowMs || RETRY_MS);
        });
    }, IDLE_MS);
    this.windowTimer.unref();
  }

  /** Flushes a window that has closed; opens the next if something is (still, or again) waiting. */
  private async flushDue(): Promise<void> {
    this.due = false;
    // The idle check, if this is a batch's end: the next window's timer takes its place.
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    await this.flush();
    if (this.pending.size) this.openWindow(this.windowMs || RETRY_MS);
  }

  /** Produces the coalesced exports, then commits the offsets they cover. One flush at a time. */
  private flush(): Promise<void> {
    this.flushing ??= this.flushNow().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    const consumer = this.consumer;
    if (!this.pending.size || !consumer) return;
    const batch = this.pending;
    this.pending = new Map();
    this.pendingExports = 0;
    const out: OutMessage[] = [];
    try {
      for (const e of batch.values()) {
        // Each message to bytes at once: a window's JSON strings (a few KB per alert, thousands of alerts) held
        // until the append would outlive young-generation collections and be copied into the old generation.
        for (const x of e.exports.values())
          out.push({ topic: this.o.exportTopic, key: x.uid, value: Buffer.from(JSON.stringify(exportedAlert(x.alert, x.uid, x.change, x.samples))) });
      }
      if (out.length) await this.o.writer.append(out);
    } catch (err) {
      // Kept for the next window, before what came since (which may be newer changes of the same alerts).
      for (const [p, e] of batch) {
        const now = this.pending.get(p);
        if (now) for (const x of now.exports.values()) keepNewest(e.exports, x);
        this.pending.set(p, { exports: e.exports, upto: Math.max(e.upto, now?.upto ?? -1) });
      }
      this.pendingExports = [...this.pending.values()].reduce((n, e) => n + e.exports.size, 0);
      this.log.warn({ error: errText(err), messages: out.length }, 'Kafka: producing the export failed; it is tried again with the next window');
      this.openWindow(this.windowMs || RETRY_MS);
      return;
    }
    try {
      await consumer.commitOffsets([...batch].map(([partition, e]) => ({ topic: this.o.logTopic, partition, offset: String(e.upto + 1) })));
    } catch (err) {
      // Not committed: whoever owns the partitions next hands these changes on again (exports twice, webhooks once by their claims).
      this.log.debug({ error: errText(err) }, 'Kafka: committing the delivery group offsets failed');
    }
  }

  /**
   * A group without offsets (a new cluster, or every replica down for longer
   * than the brokers keep group offsets) starts at the end of the log as it is
   * now: history must not be delivered to webhooks a second time, and what is
   * produced while the group forms must not be skipped (which "latest" would).
   */
  private async initOffsets(admin: Admin): Promise<void> {
    const committed = await retrying(() => admin.fetchOffsets({ groupId: this.o.groupId, topics: [this.o.logTopic] }));
    const parts = committed[0]?.partitions ?? [];
    if (parts.some((p) => Number(p.offset) >= 0)) return;
    const ends = await retrying(() => admin.fetchTopicOffsets(this.o.logTopic));
    this.initialEnds = new Map(ends.map((e) => [e.partition, e.high]));
  }

  private async launch(): Promise<void> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      partitionAssigners: [stableAssigner(this.o.replica)],
      sessionTimeout: this.o.cfg.session_timeout,
      heartbeatInterval: Math.max(1000, Math.floor(this.o.cfg.session_timeout / 10)),
      maxWaitTimeInMs: WINDOW_MS,
      minBytes: WINDOW_BYTES,
      maxBytesPerPartition: WINDOW_BYTES,
      allowAutoTopicCreation: false,
      ...(this.o.metadataMaxAge ? { metadataMaxAge: this.o.metadataMaxAge } : {}),
      // A consumer stopped while it joins fails its join; kafkajs would restart it after stop().
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 5_000, restartOnFailure: async () => !this.stopped },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.REBALANCING, () => {
      this.rebalancing = true;
    });
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.rebalancing = false;
      const mine = e.payload.memberAssignment[this.o.logTopic] ?? [];
      // The projection notes what changes in these partitions from now on; what came before is read from the log.
      this.o.projection.noteChangesOf(mine);
      const ends = this.initialEnds;
      this.initialEnds = undefined;
      this.fresh.clear();
      for (const p of mine) this.fresh.add(p);
      // Exports waiting for partitions this member no longer owns are left to their new owner (it starts at the committed offset).
      for (const p of [...this.pending.keys()]) if (!mine.includes(p)) this.pending.delete(p);
      // What this member handed on but did not export is handed on again by whoever reads it next, this member included.
      this.seen.clear();
      this.pendingExports = [...this.pending.values()].reduce((n, x) => n + x.exports.size, 0);
      if (ends) {
        for (const p of mine) {
          const at = ends.get(p) ?? '0';
          consumer.seek({ topic: this.o.logTopic, partition: p, offset: at });
          // Committed with the next window too, should the commit below not go through.
          this.handedOn(p, Number(at) - 1, []);
        }
        // Committed at once (kafkajs takes commits once the first join is done), so that
        // a member joining next finds offsets and does not start at the end in its turn.
        const start = mine.map((p) => ({ topic: this.o.logTopic, partition: p, offset: ends.get(p) ?? '0' }));
        setTimeout(
          () =>
            void consumer
              .commitOffsets(start)
              .catch((err: unknown) => this.log.debug({ error: errText(err) }, "Kafka: committing the delivery group's first offsets failed")),
          0,
        );
        this.log.info({ group: this.o.groupId }, 'Kafka: the delivery group is new; it starts at the end of the alert log');
      }
      this.log.info({ partitions: mine }, 'Kafka: this replica delivers webhooks and the export for these log partitions');
    });
    consumer.on(consumer.events.CRASH, (e) => {
      // Stopping disconnects it, which fails a join or fetch under way: not a failure to report.
      if (this.stopped) return;
      this.log.error(
        { error: explainKafkaError(e.payload.error, this.o.cfg, this.o.logTopic), restarting: e.payload.restart },
        'Kafka: the delivery group member failed',
      );
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.o.logTopic, fromBeginning: true });
    await runOrThrow(
      consumer,
      () => consumer.run({ autoCommit: false, eachBatchAutoResolve: false, partitionsConsumedConcurrently: 2, eachBatch: (b) => this.eachBatch(b) }),
      () => {
        if (!this.stopped && this.consumer === consumer) void this.restartLater();
      },
    );
  }

  private restartLater(): Promise<void> {
    return relaunchUntilRunning({
      what: 'the delivery group member',
      log: this.log,
      signal: this.abort.signal,
      disconnect: async () => {
        await this.consumer?.disconnect();
      },
      launch: () => this.launch(),
      explain: (e) => explainKafkaError(e, this.o.cfg, this.o.logTopic),
    });
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (!(await waitWhileHeld(this.o.hold, { heartbeat, isRunning, isStale }))) return;
    const p = batch.partition;
    const msgs = batch.messages;
    if (this.fresh.has(p)) {
      // A partition this member just got: claims its previous owner published after
      // its last commit are in the log before the end it has now. Take them over
      // (through the projection) before handing anything on, so what the previous
      // owner recorded is not recorded again.
      const end = Number(batch.highWatermark);
      while (end > 0 && !(await this.o.projection.waitFor(p, end - 1, 2_000))) {
        if (!isRunning() || isStale() || this.stopped) return;
        await heartbeat();
      }
      if (!isRunning() || isStale()) return;
      this.fresh.delete(p);
    }
    for (let i = 0; i < msgs.length; i += FLUSH_EVERY) {
      const chunk = msgs.slice(i, i + FLUSH_EVERY);
      const last = chunk[chunk.length - 1]!.offset;
      // The changes must be in this replica's store before they can be described.
      while (!(await this.o.projection.waitFor(p, Number(last), 2_000))) {
        if (!isRunning() || isStale() || this.stopped) return;
        await heartbeat();
      }
      if (!isRunning() || isStale()) return;
      // Each alert once per chunk, with the last change that touched it. The
      // projection noted what each change did (ChangeNote) for the partitions
      // this member owns; only messages from before it began noting (a
      // partition just assigned) are looked up in the log and the store.
      const from = this.o.projection.notedFrom(p) ?? Number.POSITIVE_INFINITY;
      const notes = from === Number.POSITIVE_INFINITY ? [] : this.o.projection.peekNotes(p, Number(chunk[0]!.offset), Number(last));
      const touched = new Map<number, ExportedAlert['change']>();
      // Agent events of this chunk: an alert whose opening event is among them is opened now.
      const events = new Set<string>();
      for (const m of chunk) {
        if (Number(m.offset) >= from) break;
        for (const ref of logRefs(m.headers, m.value)) {
          if (ref.type === 'alert') events.add(ref.ref);
          const id = ref.type === 'alert' ? this.o.projection.alertOfEvent(ref.ref) : this.o.projection.alertOfUid(ref.ref);
          if (id === undefined) {
            handled.inc({ result: 'gone' });
            continue;
          }
          touched.delete(id);
          touched.set(id, { kind: ref.type, log_partition: p, log_offset: m.offset });
        }
      }
      const noted = new Set(notes.map((n) => n.id));
      const changed: { a: StoredAlert; change: ExportedAlert['change']; opened: boolean }[] = [];
      for (const [id, change] of touched) {
        if (noted.has(id)) continue;
        const a = this.o.store.get(id);
        if (!a) {
          handled.inc({ result: 'gone' });
          continue;
        }
        const uid = this.o.projection.uidOf(a.id);
        const opening = uid ? parseAlertUid(uid)?.firstEvent : undefined;
        changed.push({ a, change, opened: opening !== undefined && events.has(opening) });
      }
      for (const n of notes) changed.push({ a: n.alert, change: { kind: n.kind, log_partition: p, log_offset: String(n.offset) }, opened: n.opened });
      const alerts: StoredAlert[] = [];
      const keyed: KeyedAlert[] = [];
      const exports: PendingExport[] = [];
      const integrations = this.o.webhooks !== undefined && (this.o.webhooks.active?.() ?? true);
      for (const { a, change, opened } of changed) {
        if ((this.seen.get(a.id) ?? -1) >= a.seq) {
          handled.inc({ result: 'unchanged' });
          continue;
        }
        alerts.push(a);
        // Described only for what uses it: the export, and integrations if there are any.
        if (!integrations && !this.o.exportTopic) continue;
        const uid = this.o.projection.uidOf(a.id);
        // The alert as of its last change, which may be past this chunk: when
        // the member runs behind the projection (a dead owner's partitions wait
        // for the session timeout; a backlog), an alert opened here may be
        // resolved or ignored already. Its opening is handed on as it was, so
        // the integrations get `triggered` (and then `resolved`), as a server
        // without Kafka sends them.
        if (integrations) {
          if (opened && (a.status === 'resolved' || a.status === 'ignored')) keyed.push({ alert: { ...a, status: 'triggered' }, key: uid });
          keyed.push({ alert: a, key: uid });
        }
        if (this.o.exportTopic && uid) exports.push({ alert: a, uid, change, samples: undefined });
      }
      // The deliveries, then their claims to the log; the export waits for
      // its window, and the offset for the export (its consumers can
      // de-duplicate on `id` and `change` together). A crash after the deliveries and before
      // their claims are in the log lets the next owner record them again,
      // under the same webhook-ids (derived from the alert and event); a
      // crash after the claims costs nothing, the next owner takes them over.
      // What is handed on is remembered only now: a chunk that failed is read again.
      let claims = this.unpublished.get(p) ?? [];
      let recorded = 0;
      if (keyed.length && this.o.webhooks) {
        const r = this.o.db.transaction(() => this.o.webhooks!.enqueueShared(keyed))();
        recorded = r.deliveries;
        if (r.claims.length) claims = claims.concat(r.claims);
        if (recorded) this.o.onStep?.('after_outbox', { partition: p, offset: last });
      }
      if (claims.length) {
        this.unpublished.set(p, claims);
        await this.publishClaims(p, last, claims);
        this.unpublished.delete(p);
        if (recorded) this.o.onStep?.('after_claims', { partition: p, offset: last });
      }
      if (this.seen.size + alerts.length > SEEN_MAX) this.seen.clear();
      for (const a of alerts) this.seen.set(a.id, a.seq);
      handled.inc({ result: 'handed_on' }, alerts.length);
      this.o.projection.dropNotes(p, notes);
      this.handedOn(p, Number(last), exports);
      resolveOffset(last);
      if (this.pendingExports >= EXPORT_MAX) await this.flush();
      await heartbeat();
    }
    // Exported and committed before the batch ends, while this member surely
    // owns the partition (see openWindow). A rebalance before the window
    // closes drops the partition's waiting exports (GROUP_JOIN): the next
    // owner starts at the committed offset and exports them instead.
    if (isRunning() && !isStale()) {
      if (this.windowMs === 0) await this.flush();
      else if (this.due) await this.flushDue();
    }
  }

  /** Publishes claims to the log partition of the changes they are for, where every replica's projection reads them. */
  private async publishClaims(partition: number, upto: string, claims: SharedClaim[]): Promise<void> {
    const out: OutMessage[] = [];
    const at = new Date().toISOString();
    for (let i = 0; i < claims.length; i += CLAIMS_PER_MESSAGE) {
      out.push({
        topic: this.o.logTopic,
        partition,
        key: `claims/${partition}`,
        value: encodeClaimsEvent({ partition, upto, claims: claims.slice(i, i + CLAIMS_PER_MESSAGE), at, replica: this.o.replica }),
        headers: { [HEADER_TYPE]: 'claims', [HEADER_REF]: `${partition}/${upto}` },
      });
    }
    await this.o.writer.append(out);
    handled.inc({ result: 'claims_published' }, claims.length);
  }

  async stop(): Promise<void> {
    if (this.windowTimer) clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    // What was handed on goes out before leaving the group (else the next owner does it again).
    await this.flush().catch(() => undefined);
    this.abort.abort();
    if (this.windowTimer) clearTimeout(this.windowTimer);
    await this.consumer?.disconnect().catch((e: unknown) => this.log.debug({ error: errText(e) }, 'Kafka: leaving the delivery group failed'));
  }
}
