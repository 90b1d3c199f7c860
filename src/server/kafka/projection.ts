import type { Statement } from 'better-sqlite3';
import type { Admin, Consumer, EachBatchPayload, IHeaders, Kafka as KafkaClient } from 'kafkajs';
import { Counter, Gauge } from 'prom-client';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { kafkaRegistry } from './metrics.js';
import type { DB } from '../../shared/sqlite/open.js';
import { MAX_SAMPLES } from '../../shared/alert/payload.js';
import type { AlertChange, AlertStore, ChangeTx, IncomingEvent, StoredAlert } from '../store/alert-store.js';
import { relaunchUntilRunning, runOrThrow, waitWhileHeld } from './relaunch.js';
import { explainKafkaError, retrying } from './client.js';
import { alertUid, checkEntry, decodeLogEvent, HEADER_REF, HEADER_TYPE, type ClaimsLogEvent, type LogEvent, type StatusLogEvent } from './messages.js';
import type { AppendedEvents, OwnEvents } from './own-events.js';
import { isVerdictError } from '../../shared/errors.js';

// Nearly 700 lines on purpose: reading the log, applying the chunks of a fetch
// to the store together and keeping the per-partition change records delivery
// takes share one consumer loop and its offsets; split, they would share them
// through more interfaces than code.

const projected = new Counter({
  name: 'verdict_kafka_projected_events_total',
  help: 'Log messages this replica projected into its store, by outcome',
  labelNames: ['type', 'result'],
  registers: [kafkaRegistry],
});
const onAppend = new Counter({
  name: 'verdict_kafka_projected_on_append_messages_total',
  help: "This replica's own events messages projected as soon as the brokers acknowledged them, without waiting to read them back from the log",
  registers: [kafkaRegistry],
});
const lagGauge = new Gauge({
  name: 'verdict_kafka_projection_lag_messages',
  help: "Log messages not yet projected into this replica's store, as of the last fetch",
  registers: [kafkaRegistry],
});

const EVENTS_TYPE = Buffer.from('events');

/** Agent events (and log messages) applied per SQLite transaction at most: long enough to amortise the commit, short enough not to stall the feed. */
const CHUNK = 1000;

/** One partition's next run of log messages to project: agent events, then at most one status change or claims message. */
interface Chunk {
  partition: number;
  byAgent: Map<string, IncomingEvent[]>;
  /** Agent event id -> offset of its message. */
  offsets: Map<string, number>;
  events: number;
  status: StatusLogEvent | undefined;
  claims: ClaimsLogEvent | undefined;
  /** Offset of the chunk's last message. */
  last: string;
}

function newChunk(partition: number): Chunk {
  return { partition, byAgent: new Map(), offsets: new Map(), events: 0, status: undefined, claims: undefined, last: '' };
}

/** Chunks of several partitions that are applied together. */
interface Group {
  chunks: Chunk[];
  done: Promise<void>;
}

export interface ProjectionOptions {
  kafka: KafkaClient;
  cfg: KafkaConfig;
  db: DB;
  store: AlertStore;
  topic: string;
  groupId: string;
  log: Logger;
  /** Takes over webhook claims other replicas published to the log (Outbox.applyClaims). */
  claims?: ClaimSink | undefined;
  /** Tests only: nothing is projected until this resolves (to watch a replica that is behind). */
  hold?: Promise<void> | undefined;
  /** Partitions of the log at start-up: this replica's own consumer group must get them all. */
  partitions?: number | undefined;
  /** The `events` messages this replica produced, parsed: projected without parsing them again. */
  own?: OwnEvents | undefined;
  /** How old the reader's metadata may get: it reads partitions added to the log once that shows them (PARTITION_CHECK_MS). */
  metadataMaxAge?: number | undefined;
}

export interface ClaimSink {
  applyClaims(claims: ClaimsLogEvent['claims'], alertId: (uid: string) => number | undefined): number;
}

/** Why a replica should not get feed traffic yet; undefined once it may. */
export interface NotReady {
  /**
   * joining: the replica's consumers are joining their groups (after a crash, until the brokers drop the dead process's members);
   * replica_id_in_use: another server runs with this replica's id and reads part of the log in its stead.
   */
  status: 'joining' | 'catching_up' | 'replica_id_in_use';
  reason: string;
  /** Log messages of the log as it was at start-up that are not projected yet. */
  behind: number;
}

/**
 * What the projection saw change in an alert since the delivery group last
 * handed it on (one note per alert and log partition, coalesced): the
 * delivery member describes the alert from it instead of reading it again.
 */
export interface ChangeNote {
  id: number;
  /** The alert after its last change; `samples` are those that came with the changes this note covers (newest last, at most MAX_SAMPLES). */
  alert: StoredAlert;
  /** The last log message that changed it. */
  kind: 'alert' | 'status';
  offset: number;
  /** An event this note covers opened the alert. */
  opened: boolean;
}

/** Alerts with notes per partition at most; past it the partition's notes restart (the delivery reads the rest from the log and the store). */
const NOTES_MAX = 10_000;
/** Alert id -> uid cache entries at most. */
const UIDS_MAX = 200_000;

interface Waiter {
  partition: number;
  offset: number;
  resolve: (ok: boolean) => void;
  timer: NodeJS.Timeout;
}

/**
 * Projects the alert log into this replica's SQLite. Every replica reads every
 * partition, in its own consumer group, and keeps its progress in SQLite next
 * to what it projected. Projection is idempotent, so the crash window between
 * storing and recording progress only means reading a few messages again:
 * an alert event is stored once by its event id, and a status event sets a
 * status the alert already has.
 */
export class Projection {
  private consumer: Consumer | undefined;
  private readonly positions = new Map<number, number>();
  private waiters: Waiter[] = [];
  /** Per partition, the end of the log at start-up, for partitions that had anything to read then. */
  private target: Map<number, number> | undefined;
  private caughtUpLogged = false;
  /** No progress in SQLite at start-up: the store is being built from the log. */
  private fromScratch = false;
  private startedAt = Date.now();
  private readonly s: Record<string, Statement<unknown[]>>;
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }
  /** Set while this replica's consumer group has another member: what it got, of how many partitions. */
  private sharedGroup: { mine: number; of: number } | undefined;
  /** Partitions whose changes are noted (the delivery member owns them) -> the first offset whose changes are all noted. */
  private readonly noted = new Map<number, number>();
  private readonly notes = new Map<number, Map<number, ChangeNote>>();
  /** What is being projected now: the chunks whose agent events are ingested, or the status change being applied. */
  private current: { chunks: readonly Chunk[]; status?: { partition: number; offset: number } } | undefined;
  /** Chunks fetched in the same go, waiting to be applied together (see project). */
  private group: Group | undefined;
  private readonly uids = new Map<number, string>();
  /** Partitions with a chunk read from the log and not applied yet: nothing may be applied before it. */
  private readonly reading = new Set<number>();
  /** Tests only: set until the hold is released. */
  private held: boolean;
  /** Partitions of the log: at start-up, then as PartitionWatch sees it grow. */
  private partitions: number;

  constructor(private readonly o: ProjectionOptions) {
    this.log = o.log;
    this.partitions = o.partitions ?? 0;
    const db = o.db;
    this.s = {
      offsets: db.prepare('SELECT partition, next_offset FROM kafka_offsets WHERE topic = ?'),
      putOffset: db.prepare(
        'INSERT INTO kafka_offsets (topic, partition, next_offset) VALUES (?, ?, ?) ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset',
      ),
      uidOf: db.prepare('SELECT uid FROM kafka_alert_uids WHERE alert_id = ?'),
      alertOfUid: db.prepare('SELECT alert_id FROM kafka_alert_uids WHERE uid = ?'),
      putUid: db.prepare('INSERT OR IGNORE INTO kafka_alert_uids (alert_id, uid) VALUES (?, ?)'),
    };
    for (const r of this.s.offsets!.all(o.topic) as { partition: number; next_offset: number }[]) this.positions.set(r.partition, r.next_offset);
    // Runs inside the store's ingest transaction: an alert and its name commit together.
    o.store.onChange((changes, tx) => {
      this.nameNewAlerts(changes, tx);
      this.noteChanges(changes, tx);
    });
    this.held = o.hold !== undefined;
    void o.hold?.then(() => {
      this.held = false;
    });
    o.own?.onAppended((list) => this.applyAppended(list));
  }

  /**
   * Applies this replica's own messages as the brokers acknowledge them,
   * those that are the next to project in their partition: an agent batch
   * is then one store write, as on a single server, and its parsed events
   * are let go at once instead of waiting tens of milliseconds for the log
   * to give them back. Messages with anything before them not projected
   * yet (another replica's, a status change, a chunk being read) are left
   * to the log, where they are read in order.
   */
  private applyAppended(list: readonly AppendedEvents[]): ReadonlySet<AppendedEvents> {
    const done = new Set<AppendedEvents>();
    if (this.stopped || this.held) return done;
    const chunks = new Map<number, Chunk>();
    const inOrder = [...list].sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    for (const a of inOrder) {
      const p = a.partition;
      if (this.reading.has(p)) continue;
      let c = chunks.get(p);
      if (a.offset !== (c ? Number(c.last) + 1 : this.position(p))) continue;
      if (!c) chunks.set(p, (c = newChunk(p)));
      this.addEvents(c, a.agent, a.events, a.offset, String(a.offset));
      c.last = String(a.offset);
      done.add(a);
    }
    if (!chunks.size) return done;
    try {
      this.applyChunks([...chunks.values()]);
    } catch (e) {
      // Runs applied before the failure stay applied (their offsets moved); the rest are read back from the log.
      for (const a of done) if (a.offset >= this.position(a.partition)) done.delete(a);
      this.log.error({ error: errText(e) }, 'Kafka: projecting an acknowledged batch failed; it is read back from the log');
    }
    onAppend.inc(done.size);
    return done;
  }

  /**
   * Partitions whose changes the delivery member hands on (its assignment):
   * from now on their changes are noted, for takeNotes. Notes of other
   * partitions are dropped.
   */
  noteChangesOf(partitions: readonly number[]): void {
    const want = new Set(partitions);
    for (const p of [...this.noted.keys()]) {
      if (!want.has(p)) {
        this.noted.delete(p);
        this.notes.delete(p);
      }
    }
    for (const p of want) {
      if (this.noted.has(p)) continue;
      this.noted.set(p, this.position(p));
      this.notes.set(p, new Map());
    }
  }

  /** The first offset of `partition` from which every change is noted; undefined when its changes are not noted. */
  notedFrom(partition: number): number | undefined {
    return this.noted.get(partition);
  }

  /**
   * The notes of alerts last changed at offsets from `from` to `upto`
   * (inclusive); they stay until dropNotes. Notes of changes before `from`
   * (before where the delivery member started) are dropped.
   */
  peekNotes(partition: number, from: number, upto: number): ChangeNote[] {
    const out: ChangeNote[] = [];
    const m = this.notes.get(partition);
    if (!m) return out;
    for (const n of m.values()) {
      if (n.offset < from) m.delete(n.id);
      else if (n.offset <= upto) out.push(n);
    }
    return out;
  }

  /** Forgets notes that were handed on (unless the alert changed again meanwhile). */
  dropNotes(partition: number, handed: readonly ChangeNote[]): void {
    const m = this.notes.get(partition);
    if (!m) return;
    for (const n of handed) if (m.get(n.id) === n) m.delete(n.id);
  }

  private noteChanges(changes: readonly AlertChange[], tx: ChangeTx): void {
    const cur = this.current;
    if (!cur || !this.noted.size) return;
    const staged: { p: number; n: ChangeNote }[] = [];
    // Chunks of this write whose partition is noted: a change's events are looked at only when one of them may hold them.
    let notedChunks = 0;
    for (const x of cur.chunks) if (this.noted.has(x.partition)) notedChunks++;
    for (const c of changes) {
      if (c.type === 'stored') {
        // An alert's events share its key, hence one partition: the chunk of its first event has them all,
        // unless partitions were added to the log and its events straddle the change.
        const first = c.events[0];
        const chunk = first === undefined ? undefined : cur.chunks.find((x) => x.offsets.has(first));
        if (!chunk) continue;
        const own = this.noted.has(chunk.partition);
        // Another noted chunk may hold some of its events only when several chunks went into this write.
        const others = notedChunks > (own ? 1 : 0);
        if (!own && !others) continue;
        let offset = -1;
        let straddles = false;
        for (const e of c.events) {
          const o = chunk.offsets.get(e);
          if (o === undefined) straddles = true;
          else if (o > offset) offset = o;
        }
        if (own) staged.push({ p: chunk.partition, n: { id: c.alert.id, alert: c.alert, kind: 'alert', offset, opened: c.opened } });
        // Noted in each partition with its events: that partition's owner may be another replica, which hands it on only from a note.
        if (straddles && others) {
          for (const other of cur.chunks) {
            if (other === chunk || !this.noted.has(other.partition)) continue;
            let o = -1;
            for (const e of c.events) o = Math.max(o, other.offsets.get(e) ?? -1);
            if (o >= 0) staged.push({ p: other.partition, n: { id: c.alert.id, alert: c.alert, kind: 'alert', offset: o, opened: false } });
          }
        }
      } else if (cur.status && this.noted.has(cur.status.partition)) {
        staged.push({ p: cur.status.partition, n: { id: c.alert.id, alert: c.alert, kind: 'status', offset: cur.status.offset, opened: false } });
      }
    }
    if (!staged.length) return;
    // Only changes that committed are noted.
    tx.afterCommit(() => {
      for (const { p, n } of staged) {
        let m = this.notes.get(p);
        if (!m || !this.noted.has(p)) continue;
        const prev = m.get(n.id);
        if (prev) {
          n.opened ||= prev.opened;
          if (n.alert.samples.length < MAX_SAMPLES && prev.alert.samples.length) {
            n.alert = { ...n.alert, samples: prev.alert.samples.concat(n.alert.samples).slice(-MAX_SAMPLES) };
          }
          if (n.offset < prev.offset) n.offset = prev.offset;
          m.delete(n.id);
        } else if (m.size >= NOTES_MAX) {
          // A delivery member far behind: start over from here rather than grow without bound.
          this.noted.set(p, this.position(p));
          this.notes.set(p, (m = new Map()));
        }
        m.set(n.id, n);
      }
    });
  }

  /** The log grew to `n` partitions: this replica's own group must get them all. */
  setPartitions(n: number): void {
    this.partitions = Math.max(this.partitions, n);
  }

  /** Next offset to project per partition. */
  position(partition: number): number {
    return this.positions.get(partition) ?? 0;
  }

  /** True once the log, as it was at start-up, is projected (a rebuild is done). */
  caughtUp(): boolean {
    if (!this.target) return false;
    for (const [p, end] of this.target) if (this.position(p) < end) return false;
    return true;
  }

  /** Messages of the log as it was at start-up not projected yet (undefined before start-up has read the log's end). */
  behind(): number | undefined {
    if (!this.target) return undefined;
    let n = 0;
    for (const [p, end] of this.target) n += Math.max(0, end - this.position(p));
    return n;
  }

  /**
   * For /readyz: a replica that is rebuilding or catching up with the log
   * would serve an incomplete feed, so it is not ready until it has projected
   * the log as it was at start-up. Later lag (a burst, a broker outage) does
   * not make it unready again: every replica would be behind alike.
   */
  notReady(): NotReady | undefined {
    if (this.sharedGroup) {
      return { status: 'replica_id_in_use', behind: this.behind() ?? 0, reason: this.sharedGroupText(this.sharedGroup) };
    }
    if (this.caughtUp()) return undefined;
    const behind = this.behind();
    return {
      status: 'catching_up',
      behind: behind ?? 0,
      reason:
        behind === undefined
          ? 'this replica has not read the end of the Kafka alert log yet'
          : `this replica is ${this.fromScratch ? 'building its store from' : 'catching up with'} the Kafka alert log: ${behind} of the messages that were in the log at start-up are not in its store yet`,
    };
  }

  uidOf(alertId: number): string | undefined {
    const known = this.uids.get(alertId);
    if (known !== undefined) return known;
    const uid = (this.s.uidOf!.get(alertId) as { uid: string } | undefined)?.uid;
    if (uid !== undefined) this.rememberUid(alertId, uid);
    return uid;
  }

  private rememberUid(alertId: number, uid: string): void {
    if (this.uids.size >= UIDS_MAX) this.uids.clear();
    this.uids.set(alertId, uid);
  }

  alertOfUid(uid: string): number | undefined {
    return (this.s.alertOfUid!.get(uid) as { alert_id: number } | undefined)?.alert_id;
  }

  alertOfEvent(eventId: string): number | undefined {
    return this.o.store.alertOfEvent(eventId);
  }

  /** Resolves true once `offset` of `partition` is projected (position > offset), false on timeout. */
  waitFor(partition: number, offset: number, timeoutMs: number): Promise<boolean> {
    if (this.position(partition) > offset) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => {
      const w: Waiter = {
        partition,
        offset,
        resolve,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          resolve(false);
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  async start(admin: Admin): Promise<void> {
    // The end of the log now: a replica that is rebuilding says when it has caught up.
    try {
      const ends = await retrying(() => admin.fetchTopicOffsets(this.o.topic));
      // A partition whose messages all left the log (retention) has nothing to wait for.
      this.target = new Map(ends.filter((e) => Number(e.high) > Number(e.low)).map((e) => [e.partition, Number(e.high)]));
    } catch (e) {
      throw new Error(explainKafkaError(e, this.o.cfg, this.o.topic));
    }
    this.fromScratch = this.positions.size === 0;
    const behind = this.behind()!;
    if (behind > 0) {
      this.log.info(
        { messages: behind, from_scratch: this.fromScratch },
        this.fromScratch
          ? "Kafka: building this replica's store from the alert log; /readyz answers 503 until it is done"
          : 'Kafka: catching up with the alert log; /readyz answers 503 until it is done',
      );
    }
  }

  /**
   * Joins this replica's own consumer group and starts projecting. Separate
   * from start(): after a crash the brokers keep the dead process's member
   * until kafka.session_timeout, and the join waits for that, so the server
   * listens meanwhile (readiness says it is joining).
   */
  async join(): Promise<void> {
    try {
      await this.launch();
    } catch (e) {
      throw new Error(explainKafkaError(e, this.o.cfg, this.o.topic));
    }
    this.checkCaughtUp();
  }

  private async launch(): Promise<void> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      sessionTimeout: this.o.cfg.session_timeout,
      heartbeatInterval: Math.max(1000, Math.floor(this.o.cfg.session_timeout / 10)),
      maxWaitTimeInMs: 100,
      maxBytesPerPartition: 4 * 1024 * 1024,
      allowAutoTopicCreation: false,
      ...(this.o.metadataMaxAge ? { metadataMaxAge: this.o.metadataMaxAge } : {}),
      // A consumer stopped while it joins fails its join; kafkajs would restart it after stop().
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 5_000, restartOnFailure: async () => !this.stopped },
    });
    this.consumer = consumer;
    // The group's committed offsets only mirror SQLite; after every (re)join
    // each partition starts where SQLite says, so the two cannot drift apart.
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      const mine = e.payload.memberAssignment[this.o.topic] ?? [];
      // The group is this replica's own: a second member is a second server with
      // the same replica id (a copied data_dir). Each would project only part of
      // the log, and both feeds would lack alerts, with nothing else to show it.
      const of = this.partitions;
      this.sharedGroup = mine.length < of ? { mine: mine.length, of } : undefined;
      if (this.sharedGroup) this.log.error({ group: this.o.groupId, partitions: mine }, this.sharedGroupText(this.sharedGroup));
      for (const p of mine) {
        const next = this.positions.get(p);
        if (next !== undefined) consumer.seek({ topic: this.o.topic, partition: p, offset: String(next) });
      }
    });
    consumer.on(consumer.events.CRASH, (e) => {
      // Stopping disconnects it, which fails a join or fetch under way: not a failure to report.
      if (this.stopped) return;
      this.log.error(
        { error: explainKafkaError(e.payload.error, this.o.cfg, this.o.topic), restarting: e.payload.restart },
        'Kafka: the alert log reader failed',
      );
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.o.topic, fromBeginning: true });
    await runOrThrow(
      consumer,
      () =>
        consumer.run({
          autoCommit: true,
          autoCommitInterval: 1000,
          eachBatchAutoResolve: false,
          // Every partition's batch of a fetch at once, so that project() applies them together. The count at
          // start-up: after the log grows at runtime some batches of a fetch wait for others (until a restart).
          partitionsConsumedConcurrently: Math.max(1, this.partitions),
          eachBatch: (b) => this.eachBatch(b),
        }),
      () => {
        if (!this.stopped && this.consumer === consumer) void this.restartLater();
      },
    );
  }

  private sharedGroupText(g: { mine: number; of: number }): string {
    return `Kafka: another server runs with this replica's id (consumer group ${this.o.groupId}), so this one projects only ${g.mine} of the ${g.of} partitions of the alert log and its feed lacks alerts; its data_dir is probably a copy of another server's: give every server its own data_dir (an empty one is rebuilt from the log)`;
  }

  private restartLater(): Promise<void> {
    return relaunchUntilRunning({
      what: 'the alert log reader',
      log: this.log,
      signal: this.abort.signal,
      disconnect: async () => {
        await this.consumer?.disconnect();
      },
      launch: () => this.launch(),
      explain: (e) => explainKafkaError(e, this.o.cfg, this.o.topic),
    });
  }

  private async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    if (!(await waitWhileHeld(this.o.hold, { heartbeat, isRunning, isStale }))) return;
    // A join that got through while the replica stopped: its store is closing.
    if (this.stopped) return;
    const p = batch.partition;
    const msgs = batch.messages;
    const lag = Number(batch.highWatermark) - Number(batch.lastOffset()) - 1;
    lagGauge.set(Math.max(0, lag));
    let i = 0;
    while (i < msgs.length) {
      if (!isRunning() || isStale()) return;
      const chunk = newChunk(p);
      // Messages before the position were projected already: by a fetch that started before a seek, or as this replica's own were acknowledged.
      const from = this.position(p);
      let j = i;
      for (; j < msgs.length && chunk.events < CHUNK && j - i < CHUNK; j++) {
        const m = msgs[j]!;
        const offset = Number(m.offset);
        if (offset < from) continue;
        const own = this.ownEvents(m.headers, m.value);
        if (own) {
          this.addEvents(chunk, own.agent, own.events, offset, m.offset);
          continue;
        }
        let ev: LogEvent;
        try {
          ev = decodeLogEvent(m.value);
        } catch (e) {
          if (!isVerdictError(e, 'VERDICT_LOG_MESSAGE_INVALID')) throw e;
          projected.inc({ type: 'invalid', result: 'skipped' });
          this.log.error({ partition: p, offset: m.offset, error: e.message }, 'Kafka: skipped a log message that is not a Verdict event');
          continue;
        }
        if (ev.type === 'events' || ev.type === 'alert') {
          // Retention and the clock-skew flag go by when the producing replica received the event, alike on every replica.
          const at = Date.parse(ev.at);
          const list: IncomingEvent[] = [];
          for (const e of ev.type === 'alert' ? [ev] : (ev.events as unknown[])) {
            // checkEntry (in addEvents) refuses what is not an event.
            const x = (e ?? {}) as IncomingEvent;
            list.push(Number.isFinite(at) ? { id: x.id, payload: x.payload, receivedAt: at } : { id: x.id, payload: x.payload });
          }
          this.addEvents(chunk, ev.agent, list, offset, m.offset);
        } else {
          // A status change applies after the events before it, and before those after it;
          // claims name alerts that events before them opened.
          if (chunk.byAgent.size) break;
          if (ev.type === 'status') chunk.status = ev;
          else chunk.claims = ev;
          j++;
          break;
        }
      }
      chunk.last = msgs[j - 1]!.offset;
      if (Number(chunk.last) >= from) {
        this.reading.add(p);
        try {
          await this.project(chunk);
        } finally {
          this.reading.delete(p);
        }
      }
      resolveOffset(chunk.last);
      i = j;
      await heartbeat();
    }
    this.checkCaughtUp();
  }

  /** An `events` message this replica produced, as it parsed it (OwnEvents), if the log holds exactly that. */
  private ownEvents(headers: IHeaders | undefined, value: Buffer | null): { agent: string; events: IncomingEvent[] } | undefined {
    const own = this.o.own;
    const t = headers?.[HEADER_TYPE];
    const r = headers?.[HEADER_REF];
    if (!own || !value || !Buffer.isBuffer(t) || !Buffer.isBuffer(r) || !t.equals(EVENTS_TYPE)) return undefined;
    return own.take(r.toString(), value);
  }

  /** Adds the events that can be projected to the chunk. */
  private addEvents(chunk: Chunk, agent: string, events: readonly IncomingEvent[], offset: number, at: string): void {
    let list = chunk.byAgent.get(agent);
    for (const e of events) {
      const why = checkEntry(e);
      if (why) {
        projected.inc({ type: 'invalid', result: 'skipped' });
        this.log.error({ partition: chunk.partition, offset: at, error: why }, 'Kafka: skipped an agent event in the log that cannot be stored');
        continue;
      }
      if (!list) chunk.byAgent.set(agent, (list = []));
      list.push(e);
      chunk.offsets.set(e.id, offset);
      chunk.events++;
    }
  }

  /**
   * Applies a chunk together with the chunks other partitions' eachBatch
   * calls hand in before the event loop turns (kafkajs runs them side by
   * side, see launch): one store transaction for the agent events of
   * several partitions instead of one each. A fetch brings a few dozen
   * events per partition, and a transaction's cost is mostly per
   * transaction (every page it touches is written to the WAL at commit).
   * Partitions are independent (an alert's events and status changes share
   * one), so only each partition's own order matters, and each chunk is
   * applied in it.
   */
  private project(chunk: Chunk): Promise<void> {
    let g = this.group;
    if (!g) {
      const chunks: Chunk[] = [];
      const done = new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          this.group = undefined;
          // In partition order, not the order kafkajs handed them in: partitions added to the log come after the
          // old ones, so an alert whose events straddle the change gets its older events first, when the count
          // grew by a multiple (otherwise some keys move to a lower partition: PartitionWatch warns).
          chunks.sort((a, b) => a.partition - b.partition);
          try {
            this.applyChunks(chunks);
            resolve();
          } catch (e) {
            reject(e);
          }
        }),
      );
      g = this.group = { chunks, done };
    }
    g.chunks.push(chunk);
    return g.done;
  }

  /** Applies chunks in runs of up to CHUNK agent events per transaction; each chunk's events before its status change or claims. */
  private applyChunks(chunks: readonly Chunk[]): void {
    for (let i = 0; i < chunks.length; ) {
      let n = chunks[i]!.events;
      let j = i + 1;
      while (j < chunks.length && n + chunks[j]!.events <= CHUNK) n += chunks[j++]!.events;
      this.applyRun(chunks.slice(i, j));
      i = j;
    }
  }

  private applyRun(run: readonly Chunk[]): void {
    const byAgent = new Map<string, IncomingEvent[]>();
    for (const c of run) {
      for (const [agent, events] of c.byAgent) {
        const list = byAgent.get(agent);
        if (list) for (const e of events) list.push(e);
        else byAgent.set(agent, events);
      }
    }
    this.current = { chunks: run };
    try {
      for (const [agent, events] of byAgent) {
        const r = this.o.store.ingest(agent, events);
        projected.inc({ type: 'alert', result: 'stored' }, r.stored);
        projected.inc({ type: 'alert', result: 'duplicate' }, r.duplicates);
      }
      for (const c of run) {
        if (!c.status) continue;
        this.current = { chunks: [], status: { partition: c.partition, offset: Number(c.last) } };
        this.applyStatus(c.status, c.partition, c.last);
      }
    } finally {
      this.current = undefined;
    }
    for (const c of run) if (c.claims) this.applyClaims(c.claims);
    this.o.db.transaction(() => {
      for (const c of run) this.s.putOffset!.run(this.o.topic, c.partition, Number(c.last) + 1);
    })();
    for (const c of run) {
      this.positions.set(c.partition, Number(c.last) + 1);
      this.notify(c.partition);
    }
  }

  private applyStatus(ev: StatusLogEvent, partition: number, offset: string): void {
    const uid = alertUid(ev.agent, ev.fingerprint, ev.alert);
    const id = this.alertOfUid(uid);
    if (id === undefined) {
      // Purged here already, or never stored (its events were dropped): nothing to change.
      projected.inc({ type: 'status', result: 'unknown_alert' });
      this.log.debug({ uid, partition, offset }, 'Kafka: a status change names an alert this replica does not have');
      return;
    }
    try {
      this.o.store.setStatus(id, ev.status, ev.actor);
      projected.inc({ type: 'status', result: 'applied' });
    } catch (e) {
      // Every replica refuses the same change at the same place in the log, so they stay alike.
      if (!isVerdictError(e, 'VERDICT_CONFLICT')) throw e;
      projected.inc({ type: 'status', result: 'conflict' });
      this.log.info(
        { uid, status: ev.status, actor: ev.actor },
        'Kafka: a status change from the log was refused: the alert is open again under a newer alert',
      );
    }
  }

  private applyClaims(ev: ClaimsLogEvent): void {
    if (!this.o.claims) return;
    const sink = this.o.claims;
    const n = this.o.db.transaction(() => sink.applyClaims(ev.claims, (uid) => this.alertOfUid(uid)))();
    projected.inc({ type: 'claims', result: 'applied' });
    this.log.debug(
      { from_replica: ev.replica, partition: ev.partition, upto: ev.upto, claims: ev.claims.length, new_here: n },
      'Kafka: took over webhook claims from the log',
    );
  }

  /**
   * Gives each alert a batch opened its replica-independent name: every
   * replica projects the same events in the same order, so the event that
   * opened it is the same everywhere.
   */
  private nameNewAlerts(changes: readonly AlertChange[], tx: ChangeTx): void {
    for (const c of changes) {
      if (c.type === 'stored' && c.opened) {
        const uid = alertUid(c.alert.agent, c.alert.fingerprint, c.events[0]!);
        const id = c.alert.id;
        this.s.putUid!.run(id, uid);
        tx.afterCommit(() => this.rememberUid(id, uid));
      }
    }
  }

  private notify(partition: number): void {
    if (!this.waiters.length) return;
    const pos = this.position(partition);
    this.waiters = this.waiters.filter((w) => {
      if (w.partition !== partition || pos <= w.offset) return true;
      clearTimeout(w.timer);
      w.resolve(true);
      return false;
    });
  }

  private checkCaughtUp(): void {
    if (this.caughtUpLogged || !this.caughtUp()) return;
    this.caughtUpLogged = true;
    const n = [...this.target!.values()].reduce((a, b) => a + b, 0);
    this.log.info(
      { messages: n, duration_ms: Date.now() - this.startedAt },
      "Kafka: this replica's store is up to date with the alert log; it is ready (/readyz)",
    );
  }

  async stop(): Promise<void> {
    this.abort.abort();
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waiters = [];
    await this.consumer?.disconnect().catch((e: unknown) => this.log.debug({ error: errText(e) }, 'Kafka: closing the log reader failed'));
  }
}
