// Partitions added to the alert log (kafka-topics.sh --alter --partitions)
// while replicas run, and between a replica's runs, on a real broker
// (scripts/kafka.sh): keys are placed among the new count, the new
// partitions are projected and delivered, and the operator is told.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { createKafkaClient } from '../../src/server/kafka/client.js';
import { keyPartition } from '../../src/server/kafka/kafkajs-tuning.js';
import { logKey } from '../../src/server/kafka/messages.js';
import { LogWriter } from '../../src/server/kafka/producer.js';
import { startKafkaReplica, type KafkaReplica, type KafkaReplicaOptions } from '../../src/server/kafka/replica.js';
import { migrateKafka, replicaId } from '../../src/server/kafka/db.js';
import { KafkaAlertSink } from '../../src/server/kafka/log-sink.js';
import type { ExportedAlert } from '../../src/server/kafka/messages.js';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { startWebhooks, type WebhooksService } from '../../src/server/webhooks/service.js';
import { stableWebhookId } from '../../src/server/webhooks/signer.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import type { DB } from '../../src/shared/sqlite/open.js';
import { capturingLogger } from '../helpers/logs.js';
import type { LogLine } from '../helpers/processes.js';
import { Receiver } from '../webhooks/receiver.js';

const { Kafka, logLevel } = kafkajs;

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-partitions-'));
let broker: Broker;
let cfg: KafkaConfig;
let rx: Receiver;

interface Node {
  db: DB;
  store: AlertStore;
  replica: KafkaReplica;
  webhooks: WebhooksService;
  logs: LogLine[];
}
const nodes: Node[] = [];

async function node(name: string, o: Partial<Pick<KafkaReplicaOptions, 'config' | 'holdProjection' | 'holdDelivery'>> = {}): Promise<Node> {
  const { log, logs } = capturingLogger('debug');
  const db = openServerDb(join(dir, name));
  const store = new AlertStore(db);
  const webhooks = startWebhooks({
    db,
    store,
    log,
    enqueueOnStore: false,
    worker: { jitter: false, pollMs: 100 },
    config: parseWebhooksJson({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'rx', type: 'generic', url: rx.url(), secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], retry_schedule: ['100ms'] }],
    }),
  });
  const replica = await startKafkaReplica({
    config: o.config ?? cfg,
    db,
    store,
    agents: new AgentRegistry(db),
    tokens: new FeedTokens(db),
    webhooks: webhooks.outbox,
    log: log.child({ replica: name }),
    partitionCheckMs: 1_000,
    holdProjection: o.holdProjection,
    holdDelivery: o.holdDelivery,
  });
  await replica.joined;
  const n: Node = { db, store, replica, webhooks, logs };
  nodes.push(n);
  return n;
}

async function closeNode(n: Node): Promise<void> {
  await n.replica.close();
  await n.webhooks.close();
  n.db.close();
  nodes.splice(nodes.indexOf(n), 1);
}

async function eventually(f: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!(await f()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return f();
}

const ev = (fp: string) => ({ id: randomUUID(), payload: falcoPayload({ fp }) });

/** A fingerprint of agent edge whose key falls in `partition` of `n`. */
function fpIn(partition: number, n: number, tag: string): string {
  for (let i = 0; ; i++) if (keyPartition(logKey('edge', `${tag}-${i}`), n) === partition) return `${tag}-${i}`;
}

const NOT_MULTIPLE = /grew from \d+ to \d+ partitions, not a multiple of \d+: some alerts' keys now fall in a lower-numbered partition/;

const ASSIGNED = 'Kafka: this replica delivers webhooks and the export for these log partitions';

const admin = () => new Kafka({ clientId: 'partitions-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).admin();

async function grow(count: number, c = cfg): Promise<void> {
  const a = admin();
  await a.connect();
  try {
    await a.createPartitions({ topicPartitions: [{ topic: `${c.topic_prefix}.log`, count }] });
  } finally {
    await a.disconnect();
  }
}

/** Messages in each partition of the log. */
async function sizes(c = cfg): Promise<Map<number, number>> {
  const a = admin();
  await a.connect();
  try {
    return new Map((await a.fetchTopicOffsets(`${c.topic_prefix}.log`)).map((o) => [o.partition, Number(o.high) - Number(o.low)]));
  } finally {
    await a.disconnect();
  }
}

/** The `verdict-ref` header of every message in the log, by partition. */
const refs = () => refsOf(cfg);

async function refsOf(c: KafkaConfig): Promise<Map<number, string[]>> {
  const want = await sizes(c);
  const total = [...want.values()].reduce((x, y) => x + y, 0);
  const got = new Map<number, string[]>();
  let n = 0;
  const consumer = new Kafka({ clientId: 'partitions-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).consumer({
    groupId: `read-${randomUUID()}`,
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: `${c.topic_prefix}.log`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        n++;
        got.set(partition, [...(got.get(partition) ?? []), String(message.headers?.['verdict-ref'] ?? '')]);
      },
    });
    await eventually(() => n >= total);
  } finally {
    await consumer.disconnect();
  }
  return got;
}

const has = (n: Node, fp: string) => n.store.list({ limit: 500 }).alerts.some((x) => x.fingerprint === fp);

beforeAll(async () => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  cfg = kafkaConfigForBootstrap(broker.bootstrap, {
    topic_prefix: `p${randomUUID().slice(0, 8)}`,
    export_topic: '',
    partitions: 2,
    session_timeout: '6s',
  });
  rx = await new Receiver().listen();
}, 320_000);

afterAll(async () => {
  for (const n of [...nodes]) await closeNode(n).catch(() => undefined);
  await rx?.close();
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('partitions added to the alert log', () => {
  it('while replicas run: keys go to the new partitions, which every replica projects and the delivery group delivers, with one warning', async () => {
    const [a, b] = [await node('a'), await node('b')];
    const before = [fpIn(0, 2, 'old'), fpIn(1, 2, 'old')].map(ev);
    await a.replica.sink.accept('edge', before);
    expect(await b.replica.waitCaughtUp(15_000)).toBe(true);
    await rx.waitForCount(2, 20_000);

    await grow(4);
    // A replica started now places keys among the 4: the running ones read what it puts in the new partitions.
    const c = await node('c');
    const fromC = [fpIn(2, 4, 'c'), fpIn(3, 4, 'c')].map(ev);
    await c.replica.sink.accept('edge', fromC);
    for (const n of [a, b]) expect(await eventually(() => fromC.every((e) => has(n, e.payload.fingerprint)))).toBe(true);

    const grew = /^Kafka: topic \S+\.log \(the alert log\) grew from 2 to 4 partitions while this replica runs/;
    const warned = await eventually(() => [a, b].every((n) => n.logs.some((l) => grew.test(l.msg))));
    // Placed among the 4, as replica c places them: two land in the new partitions.
    const after = [fpIn(2, 4, 'new'), fpIn(3, 4, 'new'), fpIn(0, 4, 'new')].map(ev);
    await a.replica.sink.accept('edge', after.slice(0, 2));
    await b.replica.sink.accept('edge', after.slice(2));
    const log = await refs();
    expect(log.get(2)).toContain(after[0]!.id);
    expect(log.get(3)).toContain(after[1]!.id);
    expect(log.get(0)).toContain(after[2]!.id);
    expect(warned).toBe(true);
    for (const n of [a, b]) {
      expect(n.logs.filter((l) => grew.test(l.msg))).toHaveLength(1);
      expect(n.logs.find((l) => grew.test(l.msg))?.msg).toMatch(/Adding partitions to the log/);
    }
    expect(c.logs.some((l) => grew.test(l.msg))).toBe(false);
    // 4 is a multiple of 2: every key stays in its partition or moves to an added one.
    for (const n of [a, b, c]) expect(n.logs.some((l) => NOT_MULTIPLE.test(l.msg))).toBe(false);

    // Projected by every replica, those that did not write them too.
    for (const n of [a, b, c]) expect(await eventually(() => after.every((e) => has(n, e.payload.fingerprint)))).toBe(true);
    for (const n of [a, b, c]) expect(await n.replica.waitCaughtUp(20_000)).toBe(true);

    // Delivered once each by whichever replica got the new partitions.
    const want = [...before, ...fromC, ...after].map((e) => stableWebhookId('rx', `edge/${e.payload.fingerprint}/${e.id}`, 'triggered')).sort();
    await rx.waitForCount(7, 30_000);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(rx.requests.map((x) => String(x.headers['webhook-id'])).sort()).toEqual(want);

    // A status change goes through the alert's new partition and applies on the other replica.
    const fp = after[0]!.payload.fingerprint;
    const onB = b.store.list({ limit: 500 }).alerts.find((x) => x.fingerprint === fp)!;
    expect((await b.replica.changeStatus(onB.id, 'acknowledged', 'bob'))?.status).toBe('acknowledged');
    expect(await eventually(() => a.store.list({ limit: 500 }).alerts.find((x) => x.fingerprint === fp)?.status === 'acknowledged')).toBe(true);
    await closeNode(b);
    await closeNode(c);
  }, 150_000);

  it('between runs: a replica that finds more partitions than it recorded says so, and places keys among them', async () => {
    const a = nodes[0]!;
    await closeNode(a);
    await grow(6);
    const again = await node('a');
    const line = again.logs.find((l) => /^Kafka: topic \S+\.log has 6 partitions, 4 when this replica last ran/.test(l.msg));
    expect(line).toBeDefined();
    // 6 is not a multiple of 4: some keys moved to an older partition, whose events may be applied out of order.
    const odd = again.logs.find((l) => NOT_MULTIPLE.test(l.msg));
    expect(odd?.level).toBe('warn');
    expect(odd?.msg).toMatch(/grow the log by a multiple of its count \(4 to 8\)/);
    const e = ev(fpIn(5, 6, 'later'));
    await again.replica.sink.accept('edge', [e]);
    expect((await refs()).get(5)).toEqual([e.id]);
    expect(await eventually(() => has(again, e.payload.fingerprint))).toBe(true);
  }, 120_000);

  it('fails, rather than acknowledges, messages for a partition the producer does not know yet', async () => {
    const topic = `${cfg.topic_prefix}.raw`;
    const a = admin();
    await a.connect();
    const { log } = capturingLogger();
    const writer = new LogWriter(createKafkaClient(cfg, log), cfg, log);
    try {
      await a.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await writer.start();
      // Partitions 0 and 3 share lane 0, whose producer learns the topic has one partition.
      await writer.append([0, 1, 2].map(() => ({ topic, partition: 0, key: 'k', value: 'x' })));
      await a.createPartitions({ topicPartitions: [{ topic, count: 4 }] });
      // Queued behind a request in flight, the next two callers share one request.
      const busy = writer.append([{ topic, partition: 0, key: 'k', value: 'busy' }]);
      const kept = writer.append([{ topic, partition: 0, key: 'k', value: 'kept' }]);
      const lost = writer.append([{ topic, partition: 3, key: 'k', value: 'lost?' }]);
      // kafkajs leaves out a partition its metadata lacks and answers for the rest: only its caller fails.
      await expect(lost).rejects.toThrow(/does not know partition 3 of topic/);
      expect(await busy).toEqual([{ partition: 0, offset: 3 }]);
      expect(await kept).toEqual([{ partition: 0, offset: 4 }]);
      // Its lane's producer was replaced: sent again, the message gets through.
      expect((await writer.append([{ topic, partition: 3, key: 'k', value: 'again' }]))[0]).toMatchObject({ partition: 3, offset: 0 });
    } finally {
      await writer.close();
      await a.disconnect();
    }
  }, 60_000);

  it('a log with fewer partitions than recorded (deleted and created again) is reported with what to do', async () => {
    await closeNode(nodes[0]!);
    const a = admin();
    await a.connect();
    try {
      await a.deleteTopics({ topics: [`${cfg.topic_prefix}.log`], timeout: 30_000 });
      expect(await eventually(async () => !(await a.listTopics()).includes(`${cfg.topic_prefix}.log`))).toBe(true);
    } finally {
      await a.disconnect();
    }
    // Created again by the replica with kafka.partitions (2), fewer than the 6 its store recorded.
    const again = await node('a');
    const line = again.logs.find((l) => /^Kafka: topic \S+\.log has 2 partitions, fewer than the 6 it had when this replica last ran/.test(l.msg));
    expect(line?.level).toBe('error');
    expect(line?.msg).toMatch(/give it an empty data_dir/);
    // Not recorded: said again at every start until the data_dir is emptied, as the positions still point into the old log.
    await closeNode(again);
    const third = await node('a');
    expect(third.logs.find((l) => /^Kafka: topic \S+\.log has 2 partitions, fewer than the 6 it had when this replica last ran/.test(l.msg))?.level).toBe(
      'error',
    );
  }, 120_000);

  it("hands on an alert whose events straddle the change from each partition's owner, when one store write takes both", async () => {
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `s${randomUUID().slice(0, 8)}`,
      export_topic: `s${randomUUID().slice(0, 8)}.alerts`,
      export_window: '0s',
      partitions: 2,
      session_timeout: '6s',
    });
    // X hands nothing on: what is exported comes from Y, which owns the alert's new partition only.
    const x = await node('sx', { config: own, holdDelivery: new Promise(() => undefined) });
    // Y sorts first, so it owns partitions 0 and 2 (the new one), X partition 1.
    let yName = '';
    let yId = '';
    for (let i = 0; !yName; i++) {
      const db = openServerDb(join(dir, `sy${i}`));
      migrateKafka(db);
      const id = replicaId(db);
      db.close();
      if (id < x.replica.replicaId) [yName, yId] = [`sy${i}`, id];
    }
    let fp = '';
    for (let i = 0; !fp; i++) {
      const k = logKey('edge', `s-${i}`);
      if (keyPartition(k, 2) === 1 && keyPartition(k, 3) === 2) fp = `s-${i}`;
    }
    const [p, q] = [1, 2];

    await grow(3, own);
    expect(await eventually(() => x.logs.some((l) => /grew from 2 to 3 partitions/.test(l.msg)))).toBe(true);
    expect(x.logs.find((l) => NOT_MULTIPLE.test(l.msg))?.msg).toMatch(/grow the log by a multiple of its count \(2 to 4\)/);
    // A replica that has not noticed yet puts the alert's first event in its old partition; X its second in the new one.
    const { log } = capturingLogger();
    const stale = new LogWriter(createKafkaClient(own, log), own, log);
    stale.setPartitions(`${own.topic_prefix}.log`, 2);
    await stale.start();
    const [e1, e2] = [ev(fp), ev(fp)];
    try {
      await new KafkaAlertSink(stale, `${own.topic_prefix}.log`, 'stale', log).accept('edge', [e1]);
    } finally {
      await stale.close();
    }
    await x.replica.sink.accept('edge', [e2]);
    const log2 = await refsOf(own);
    expect(log2.get(p)).toContain(e1.id);
    expect(log2.get(q)).toContain(e2.id);

    const exported: { key: string; value: ExportedAlert }[] = [];
    const reader = new Kafka({ clientId: 'partitions-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).consumer({
      groupId: `export-${randomUUID()}`,
    });
    await reader.connect();
    try {
      await reader.subscribe({ topic: own.export_topic, fromBeginning: true });
      await reader.run({
        eachMessage: async ({ message }) => void exported.push({ key: String(message.key), value: JSON.parse(String(message.value)) as ExportedAlert }),
      });
      // Y reads both partitions in one fetch, and stores both events in one write, once it owns the new partition.
      let release!: () => void;
      const y = await node(yName, { config: own, holdProjection: new Promise<void>((r) => (release = r)) });
      expect(y.replica.replicaId).toBe(yId);
      expect(await eventually(() => ((y.logs.filter((l) => l.msg === ASSIGNED).at(-1)?.partitions as number[] | undefined) ?? []).includes(q))).toBe(true);
      release();
      const uid = `edge/${fp}/${e1.id}`;
      // Opened by its older event: the old partition's messages of a fetch are applied first.
      expect(await eventually(() => y.store.list({ limit: 10 }).alerts.some((a) => y.replica.uidOf(a.id) === uid && a.events === 2))).toBe(true);
      expect(await eventually(() => exported.some((m) => m.key === uid && m.value.events === 2))).toBe(true);
    } finally {
      await reader.disconnect();
    }
  }, 120_000);
});
