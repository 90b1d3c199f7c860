// End-to-end check against a real Kafka broker (scripts/kafka.sh, KRaft, no Docker):
// create a topic, produce keyed messages with an idempotent producer, consume
// them back in a consumer group. Uses VERDICT_KAFKA_BOOTSTRAP when set (and
// then never stops that broker); otherwise starts a private broker and stops it.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import type { Admin, Consumer, Kafka as KafkaClient, Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const { Kafka, Partitioners, logLevel } = kafkajs;

const script = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/kafka.sh');

let bootstrap = '';
let stateDir: string | undefined; // set only when this file started the broker
let kafka: KafkaClient;
let admin: Admin | undefined;
let producer: Producer | undefined;
let consumer: Consumer | undefined;

function scriptEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    VERDICT_KAFKA_STATE: stateDir,
    // Stop the broker even if this test process dies before afterAll.
    VERDICT_KAFKA_OWNER_PID: String(process.pid),
  };
}

beforeAll(() => {
  const given = process.env.VERDICT_KAFKA_BOOTSTRAP?.trim();
  if (given) {
    bootstrap = given;
  } else {
    stateDir = mkdtempSync(join(tmpdir(), 'verdict-kafka-test-'));
    // First run on a machine downloads the jars (Maven Central) and builds a CDS archive.
    const out = execFileSync(script, ['start'], {
      env: scriptEnv(),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      timeout: 300_000,
    });
    const m = /^bootstrap=(\S+)$/m.exec(out);
    if (!m) throw new Error(`scripts/kafka.sh start printed no bootstrap line: ${JSON.stringify(out)}`);
    bootstrap = m[1]!;
  }
  kafka = new Kafka({
    clientId: 'verdict-broker-test',
    brokers: bootstrap.split(','),
    // kafkajs logs retriable errors (e.g. "coordinator is loading") at ERROR.
    logLevel: process.env.VERDICT_KAFKA_DEBUG ? logLevel.INFO : logLevel.NOTHING,
    connectionTimeout: 3_000,
    retry: { retries: 8, initialRetryTime: 100, maxRetryTime: 2_000 },
  });
}, 320_000);

afterAll(async () => {
  await Promise.allSettled([consumer?.disconnect(), producer?.disconnect(), admin?.disconnect()]);
  if (stateDir) {
    try {
      execFileSync(script, ['stop'], { env: scriptEnv(), stdio: ['ignore', 'ignore', 'inherit'], timeout: 60_000 });
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  }
}, 90_000);

describe('Kafka broker (kafkajs)', () => {
  it('round-trips keyed messages through an idempotent producer and a consumer group', async () => {
    const topic = `verdict-test-${randomUUID()}`;
    const groupId = `verdict-test-group-${randomUUID()}`;
    const keys = Array.from({ length: 8 }, (_, i) => `host-${i}`);
    const perKey = 25;

    admin = kafka.admin();
    await admin.connect();
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    expect(created).toBe(true);
    expect(await admin.listTopics()).toContain(topic);

    producer = kafka.producer({
      idempotent: true, // implies acks=-1; kafkajs needs maxInFlightRequests 1 for ordering
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    // Several batches, keys interleaved, sequence numbers per key.
    const sent: string[] = [];
    for (let batch = 0; batch < 5; batch++) {
      const messages = [];
      for (let i = 0; i < perKey / 5; i++) {
        for (const key of keys) {
          const seq = batch * (perKey / 5) + i;
          const value = JSON.stringify({ key, seq });
          messages.push({ key, value });
          sent.push(value);
        }
      }
      const meta = await producer.send({ topic, messages });
      for (const r of meta) expect(r.errorCode).toBe(0);
    }
    expect(sent).toHaveLength(keys.length * perKey);

    consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const received: { key: string; value: string; partition: number }[] = [];
    const allIn = new Promise<void>((resolveAll, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${received.length}/${sent.length} messages consumed within 30 s`)), 30_000);
      consumer!
        .run({
          eachMessage: async ({ partition, message }) => {
            received.push({ key: message.key!.toString(), value: message.value!.toString(), partition });
            if (received.length >= sent.length) {
              clearTimeout(timer);
              resolveAll();
            }
          },
        })
        .catch(reject);
    });
    await allIn;

    // Every message exactly once (idempotent producer: no duplicates from retries).
    expect(received.map((r) => r.value).sort()).toEqual([...sent].sort());
    // A key always lands on one partition, and within it in send order.
    for (const key of keys) {
      const mine = received.filter((r) => r.key === key);
      expect(new Set(mine.map((r) => r.partition)).size).toBe(1);
      expect(mine.map((r) => (JSON.parse(r.value) as { seq: number }).seq)).toEqual(Array.from({ length: perKey }, (_, i) => i));
    }

    // The group's offsets are committed on the broker (group coordinator works).
    await consumer.disconnect(); // commits the resolved offsets
    consumer = undefined;
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    const committed = offsets[0]!.partitions.reduce((sum, p) => sum + Number(p.offset), 0);
    expect(committed).toBe(sent.length);
  });
});
