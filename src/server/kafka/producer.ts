// Before kafkajs loads: it keeps the CRC function it finds then.
import { keyPartition } from './kafkajs-tuning.js';
import kafkajs from 'kafkajs';
import type { Kafka as KafkaClient, Message, Producer } from 'kafkajs';
import { Counter, Histogram } from 'prom-client';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { kafkaRegistry } from './metrics.js';
import { explainKafkaError } from './client.js';
import { isVerdictError, VerdictError } from '../../shared/errors.js';

const { CompressionTypes, Partitioners } = kafkajs;

const produced = new Counter({
  name: 'verdict_kafka_produced_messages_total',
  help: 'Messages Kafka acknowledged (acks=all)',
  labelNames: ['topic'],
  registers: [kafkaRegistry],
});
const produceFailures = new Counter({
  name: 'verdict_kafka_produce_failures_total',
  help: 'Produce requests that failed; their senders were told to retry',
  registers: [kafkaRegistry],
});
const produceSeconds = new Histogram({
  name: 'verdict_kafka_produce_seconds',
  help: "Time from handing messages to the producer to the brokers' acknowledgement",
  buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
  registers: [kafkaRegistry],
});

export interface OutMessage {
  topic: string;
  key: string;
  value: string | Buffer;
  headers?: Record<string, string>;
  /** Set for the log topic, whose partition count is known, so callers learn the offset. */
  partition?: number;
}

export interface Appended {
  partition: number;
  /** -1 when the partition was left to the producer. */
  offset: number;
}

/** An error whose message already says what to do. */

/** One caller's messages that go through one lane. */
interface Pending {
  messages: OutMessage[];
  /** Index of each message in the caller's list. */
  index: number[];
  bytes: number;
  /** Size of each message as Kafka counts it (UTF-8 key, value and headers, plus record overhead). */
  sizes: number[];
  /** First message not handed to a request yet: a pending too big for one request goes in parts. */
  next: number;
  caller: Caller;
}

/** One append(): done when every lane it went through has its messages acknowledged. */
interface Caller {
  results: Appended[];
  lanes: number;
  failed: boolean;
  resolve: (r: Appended[]) => void;
  reject: (e: Error) => void;
}

/** Merging concurrent callers stops at this many bytes per request (a bigger caller goes alone). */
const MAX_REQUEST_BYTES = 2 * 1024 * 1024;
/**
 * Produce requests in flight at once, each from its own lane: partition p is
 * always written by lane p % LANES, one request at a time, so each partition
 * keeps send order while requests for other partitions are in flight.
 */
const LANES = 3;
/**
 * Bytes per topic-partition in one request at most. kafkajs sends a
 * partition's messages of one request as one record batch, and the broker
 * refuses a batch larger than max.message.bytes (1 MB by default) with
 * MESSAGE_TOO_LARGE: an agent batch of one noisy alert (all one partition)
 * would then fail on every resend and block the agent's spool for good.
 * Such a caller's messages go in several requests, in order.
 */
const MAX_PARTITION_BYTES = 900 * 1024;
/** Keys whose partition is remembered at most (about 100 bytes each). */
const PARTITION_CACHE_MAX = 100_000;
/** Record framing in a v2 batch (lengths, attributes, deltas): an upper bound. */
const RECORD_OVERHEAD = 64;

function sizeOf(m: OutMessage): number {
  let n = RECORD_OVERHEAD + Buffer.byteLength(m.key) + Buffer.byteLength(m.value);
  if (m.headers) for (const [k, v] of Object.entries(m.headers)) n += Buffer.byteLength(k) + Buffer.byteLength(v) + 8;
  return n;
}

/** One request's share of a pending caller: its messages [from, to). */
interface Part {
  p: Pending;
  from: number;
  to: number;
}

/**
 * The replica's producer (acks=all, idempotent), shared by the agent sink,
 * status changes, the export and the token sync. Partitions are spread over
 * LANES lanes, each an idempotent kafkajs producer with one request in flight:
 * a partition is only ever written by its lane, one request after another, so
 * the brokers keep it in send order, while the other lanes' requests are in
 * flight meanwhile (pipelining). Concurrent callers are merged into each
 * lane's next request; a caller resolves when all its lanes have its messages.
 * Messages left to the producer's partitioner (the export topic) all go
 * through lane 0.
 *
 * After a failed request the lane's producer is replaced. kafkajs advances an
 * idempotent producer's sequence numbers only on success, so a request that
 * was written but whose answer was lost would make the next, different,
 * request look like its duplicate to the broker, which would drop it while
 * answering success. A new producer id cannot collide; the agent's resend
 * may then put an event in the log twice, which the projection ignores. A
 * caller whose messages went through several lanes fails if any lane failed
 * (the others' messages are in the log; its resend is ignored the same way).
 */
export class LogWriter {
  private readonly lanes: Lane[];
  private closed = false;
  /** Per topic, its partition count as set by setPartitions() and the partition of each key seen for it. */
  private readonly partitions = new Map<string, { n: number; keys: Map<string, number> }>();

  constructor(kafka: KafkaClient, cfg: KafkaConfig, log: Logger) {
    this.lanes = Array.from({ length: LANES }, () => new Lane(kafka, cfg, log));
  }

  /** Connects now, so a wrong broker list or credentials fail the start-up rather than the first agent batch. */
  async start(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.connect()));
  }

  /**
   * Tells the writer a topic's partition count, so partitionOf() agrees with
   * the producer (Java's murmur2) and with other replicas. A new count (the
   * topic grew, PartitionWatch) forgets the keys' partitions and renews the
   * lanes' producers before their next request: kafkajs leaves out, without
   * an error, the messages for a partition its metadata does not show yet.
   */
  setPartitions(topic: string, n: number): void {
    const before = this.partitions.get(topic);
    if (before?.n === n) return;
    if (before) for (const l of this.lanes) l.renew();
    this.partitions.set(topic, { n, keys: new Map() });
  }

  partitionOf(topic: string, key: string): number | undefined {
    const t = this.partitions.get(topic);
    if (!t) return undefined;
    // The same alerts repeat, and a Map look-up costs less than hashing the key's bytes.
    let p = t.keys.get(key);
    if (p === undefined) {
      p = keyPartition(key, t.n);
      if (t.keys.size >= PARTITION_CACHE_MAX) t.keys.clear();
      t.keys.set(key, p);
    }
    return p;
  }

  /** Resolves when the brokers have acknowledged every message (acks=all). */
  append(messages: OutMessage[]): Promise<Appended[]> {
    if (this.closed) return Promise.reject(new Error('the Kafka producer is closed (server shutting down)'));
    if (messages.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const caller: Caller = { results: new Array<Appended>(messages.length), lanes: 0, failed: false, resolve, reject };
      const parts = new Map<number, Pending>();
      messages.forEach((m, i) => {
        if (m.partition === undefined) m.partition = this.partitionOf(m.topic, m.key);
        const lane = m.partition === undefined ? 0 : m.partition % LANES;
        let p = parts.get(lane);
        if (!p) parts.set(lane, (p = { messages: [], index: [], bytes: 0, sizes: [], next: 0, caller }));
        // Encoded once here: measured without another pass, and kafkajs's record encoder copies the bytes.
        if (typeof m.value === 'string') m.value = Buffer.from(m.value);
        const size = sizeOf(m);
        p.messages.push(m);
        p.index.push(i);
        p.sizes.push(size);
        p.bytes += size;
      });
      caller.lanes = parts.size;
      for (const [lane, p] of parts) this.lanes[lane]!.enqueue(p);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.lanes.map((l) => l.close()));
  }
}

/** One idempotent producer with one request in flight: the partitions of one lane, in send order. */
class Lane {
  private producer: Producer | undefined;
  private connecting: Promise<Producer> | undefined;
  private queue: Pending[] = [];
  private flushing = false;
  /** Set when a topic grew: the next request goes through a new producer, whose metadata shows the new partitions. */
  private stale = false;

  constructor(
    private readonly kafka: KafkaClient,
    private readonly cfg: KafkaConfig,
    private readonly log: Logger,
  ) {}

  renew(): void {
    this.stale = true;
  }

  enqueue(p: Pending): void {
    this.queue.push(p);
    if (!this.flushing) void this.flush();
  }

  connect(): Promise<Producer> {
    if (this.producer) return Promise.resolve(this.producer);
    if (!this.connecting) {
      const p = this.kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      this.connecting = p.connect().then(
        () => {
          this.producer = p;
          this.connecting = undefined;
          return p;
        },
        (e: unknown) => {
          this.connecting = undefined;
          void p.disconnect().catch(() => undefined);
          throw new VerdictError('VERDICT_KAFKA', explainKafkaError(e, this.cfg));
        },
      );
    }
    return this.connecting;
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length) await this.send(this.nextRequest());
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Takes the next request off the queue: whole callers merged up to
   * MAX_REQUEST_BYTES, and no topic-partition past MAX_PARTITION_BYTES (a
   * caller that would exceed it is split; its next part leads the next request).
   */
  private nextRequest(): Part[] {
    const parts: Part[] = [];
    const perPartition = new Map<string, number>();
    let total = 0;
    let count = 0;
    while (this.queue.length) {
      const p = this.queue[0]!;
      if (count > 0 && p.next === 0 && total + p.bytes > MAX_REQUEST_BYTES) break;
      const from = p.next;
      let i = from;
      for (; i < p.messages.length; i++) {
        const m = p.messages[i]!;
        // Messages left to the producer's partitioner are counted as one partition: an upper bound.
        const key = `${m.topic}\u0000${m.partition ?? -1}`;
        const used = perPartition.get(key) ?? 0;
        if (count > 0 && used + p.sizes[i]! > MAX_PARTITION_BYTES) break;
        perPartition.set(key, used + p.sizes[i]!);
        total += p.sizes[i]!;
        count++;
      }
      if (i > from) parts.push({ p, from, to: i });
      p.next = i;
      if (i < p.messages.length) break;
      this.queue.shift();
    }
    return parts;
  }

  private async send(parts: Part[]): Promise<void> {
    const byTopic = new Map<string, Message[]>();
    // Position of each message within its topic-partition in this request: its offset is base + position.
    const positions: { topic: string; partition: number | undefined; index: number }[][] = [];
    const counters = new Map<string, number>();
    for (const { p, from, to } of parts) {
      const pos: { topic: string; partition: number | undefined; index: number }[] = [];
      for (let k = from; k < to; k++) {
        const m = p.messages[k]!;
        let list = byTopic.get(m.topic);
        if (!list) byTopic.set(m.topic, (list = []));
        const msg: Message = { key: m.key, value: m.value };
        if (m.headers) msg.headers = m.headers;
        if (m.partition !== undefined) msg.partition = m.partition;
        list.push(msg);
        const ck = `${m.topic}\u0000${m.partition ?? -1}`;
        const index = counters.get(ck) ?? 0;
        counters.set(ck, index + 1);
        pos.push({ topic: m.topic, partition: m.partition, index });
      }
      positions.push(pos);
    }
    const start = performance.now();
    // Between requests: none is in flight on the old producer.
    if (this.stale) {
      this.stale = false;
      this.replaceProducer();
    }
    try {
      const producer = await this.connect();
      const meta = await producer.sendBatch({
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
        acks: -1,
        compression: this.cfg.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
      });
      produceSeconds.observe((performance.now() - start) / 1000);
      const base = new Map<string, number>();
      for (const r of meta) base.set(`${r.topicName}\u0000${r.partition}`, Number(r.baseOffset ?? r.offset ?? -1));
      // kafkajs drops a partition its metadata lacks without an error, and writes the others: acknowledging the dropped
      // messages would lose them, failing the callers of the others would have them resend what is in the log.
      const missing = new Set<string>();
      const dropped = new Map<string, number>();
      for (const [ck, n] of counters) {
        if (ck.endsWith('\u0000-1') || base.has(ck)) continue;
        missing.add(ck);
        const topic = ck.slice(0, ck.indexOf('\u0000'));
        dropped.set(topic, (dropped.get(topic) ?? 0) + n);
      }
      for (const [topic, list] of byTopic) produced.inc({ topic }, list.length - (dropped.get(topic) ?? 0));
      const why = missing.size ? this.unknownPartitions(missing) : '';
      parts.forEach(({ p, from, to }, i) => {
        if (why && positions[i]!.some((x) => missing.has(`${x.topic}\u0000${x.partition}`))) {
          this.fail(p, why);
          return;
        }
        positions[i]!.forEach((x, k) => {
          const b = x.partition === undefined ? undefined : base.get(`${x.topic}\u0000${x.partition}`);
          p.caller.results[p.index[from + k]!] = { partition: x.partition ?? -1, offset: b === undefined || b < 0 ? -1 : b + x.index };
        });
        if (to === p.messages.length && --p.caller.lanes === 0 && !p.caller.failed) p.caller.resolve(p.caller.results);
      });
    } catch (e) {
      produceFailures.inc();
      const text = isVerdictError(e, 'VERDICT_KAFKA') ? e.message : explainKafkaError(e, this.cfg, [...byTopic.keys()].join(', '));
      this.log.warn(
        { error: text, messages: positions.reduce((n, p) => n + p.length, 0) },
        'Kafka: a produce request failed; its senders retry, and the producer is replaced',
      );
      this.replaceProducer();
      for (const { p } of parts) this.fail(p, text);
    }
  }

  /** The error for messages kafkajs left out (its metadata lacks their partitions); the producer is replaced for the next request. */
  private unknownPartitions(missing: ReadonlySet<string>): string {
    produceFailures.inc();
    const [topic, partition] = [...missing][0]!.split('\u0000');
    const text = `Kafka: the producer does not know partition ${partition} of topic ${topic}, so it sent nothing there: partitions were just added (try again), or the topic was deleted and created again with fewer (see the error this server logged about it)`;
    this.log.warn(
      { error: text, partitions: [...missing].map((ck) => ck.replace('\u0000', '/')) },
      'Kafka: a produce request left out partitions; their senders retry, and the producer is replaced',
    );
    this.replaceProducer();
    return text;
  }

  /** A caller split over several requests fails as a whole; its remaining parts are not sent. */
  private fail(p: Pending, text: string): void {
    if (p.next < p.messages.length) {
      const i = this.queue.indexOf(p);
      if (i >= 0) this.queue.splice(i, 1);
    }
    if (!p.caller.failed) {
      p.caller.failed = true;
      p.caller.reject(new Error(text));
    }
  }

  private replaceProducer(): void {
    const old = this.producer;
    this.producer = undefined;
    if (old) void old.disconnect().catch((e: unknown) => this.log.debug({ error: errText(e) }, 'Kafka: closing the old producer failed'));
  }

  async close(): Promise<void> {
    // Let requests already handed over finish; a closing server still acknowledges what got through.
    for (let i = 0; i < 100 && (this.flushing || this.queue.length); i++) await new Promise((r) => setTimeout(r, 50));
    for (const p of this.queue.splice(0)) {
      if (!p.caller.failed) {
        p.caller.failed = true;
        p.caller.reject(new Error('the Kafka producer is closed (server shutting down)'));
      }
    }
    const p = this.producer ?? (await this.connecting?.catch(() => undefined));
    this.producer = undefined;
    await p?.disconnect().catch(() => undefined);
  }
}
