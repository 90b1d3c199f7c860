// Replicas on one real Kafka broker (scripts/kafka.sh), in this process: the
// log sink, the projection, status changes through the log, rebuilding a
// replica from the log, the export topic and token sharing.
import { randomUUID } from 'node:crypto';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { registry } from '../../src/shared/metrics/registry.js';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { buildHttpServer } from '../../src/server/feed/http-server.js';
import { startKafkaReplica, type KafkaReplica, type KafkaReplicaOptions } from '../../src/server/kafka/replica.js';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { logKey, type ExportedAlert } from '../../src/server/kafka/messages.js';
import { keyPartition } from '../../src/server/kafka/kafkajs-tuning.js';
import { AlertStore, type StoredAlert } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { createRootLogger, type Logger } from '../../src/shared/log/logger.js';
import type { DB } from '../../src/shared/sqlite/open.js';
import { startWebhooks, type WebhooksService } from '../../src/server/webhooks/service.js';
import { stableWebhookId } from '../../src/server/webhooks/signer.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import { Receiver } from '../webhooks/receiver.js';
import { ConfigProject } from '../helpers/processes.js';
import { capturingLogger } from '../helpers/logs.js';
import type { VerdictError } from '../../src/shared/errors.js';

const { Kafka, logLevel } = kafkajs;

const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-replica-'));
let broker: Broker;
let cfg: KafkaConfig;

interface Node {
  db: DB;
  store: AlertStore;
  agents: AgentRegistry;
  tokens: FeedTokens;
  replica: KafkaReplica;
  changed: StoredAlert[];
  webhooks?: WebhooksService;
}
const nodes: Node[] = [];

interface NodeOptions extends Partial<Pick<KafkaReplicaOptions, 'holdProjection' | 'holdDelivery' | 'config'>> {
  log?: Logger;
  /** A webhook integration "rx" to this URL, deliveries recorded by the Kafka delivery group (as in server.ts). */
  webhookUrl?: string;
}

async function node(name: string, o: NodeOptions = {}): Promise<Node> {
  const db = openServerDb(join(dir, name));
  const store = new AlertStore(db);
  const agents = new AgentRegistry(db);
  const tokens = new FeedTokens(db);
  const webhooks =
    o.webhookUrl === undefined
      ? undefined
      : startWebhooks({
          db,
          store,
          log,
          enqueueOnStore: false,
          worker: { jitter: false, pollMs: 100 },
          config: parseWebhooksJson({
            allow_private_addresses: ['127.0.0.1'],
            integrations: [{ name: 'rx', type: 'generic', url: o.webhookUrl, secrets: ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], retry_schedule: ['100ms'] }],
          }),
        });
  const replica = await startKafkaReplica({
    config: o.config ?? cfg,
    db,
    store,
    agents,
    tokens,
    webhooks: webhooks?.outbox,
    holdProjection: o.holdProjection,
    holdDelivery: o.holdDelivery,
    log: o.log ?? log.child({ replica: name }),
  });
  await replica.joined;
  const n: Node = { db, store, agents, tokens, replica, changed: [], ...(webhooks ? { webhooks } : {}) };
  store.onChange((changes, tx) => tx.afterCommit(() => n.changed.push(...changes.map((c) => c.alert))));
  nodes.push(n);
  return n;
}

async function closeNode(n: Node): Promise<void> {
  await n.replica.close();
  await n.webhooks?.close();
  n.db.close();
  nodes.splice(nodes.indexOf(n), 1);
}

async function eventually(f: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!(await f()) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  return f();
}

/** Alerts of a replica by replica-independent id, without the per-replica fields. */
function snapshot(n: Node): Record<string, { status: string; count: number; events: number }> {
  const rows = n.db.prepare('SELECT a.id, a.status, a.count, a.events FROM alerts a').all() as { id: number; status: string; count: number; events: number }[];
  const out: Record<string, { status: string; count: number; events: number }> = {};
  for (const r of rows) out[n.replica.uidOf(r.id) ?? `local-${r.id}`] = { status: r.status, count: r.count, events: r.events };
  return out;
}

const ev = (fp: string, o: Parameters<typeof falcoPayload>[0] = {}) => ({ id: randomUUID(), payload: falcoPayload({ fp, ...o }) });

beforeAll(() => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  cfg = kafkaConfigForBootstrap(broker.bootstrap, {
    topic_prefix: `t${randomUUID().slice(0, 8)}`,
    export_topic: `t${randomUUID().slice(0, 8)}.alerts`,
    partitions: 3,
    session_timeout: '6s',
  });
}, 320_000);

afterAll(async () => {
  for (const n of [...nodes]) await closeNode(n).catch(() => undefined);
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('Kafka replicas (in process, real broker)', () => {
  let a: Node;
  let b: Node;

  it('projects what one replica accepted into every replica, once, and emits it as changes', async () => {
    [a, b] = [await node('a'), await node('b')];
    const batch = [ev('f1'), ev('f2'), ev('f1'), ev('f3')];
    const r = await a.replica.sink.accept('edge', batch);
    expect(r.stored).toBe(4);
    // The agent resends the batch (its acknowledgement was lost): stored once.
    await b.replica.sink.accept('edge', batch);
    expect(await a.replica.waitCaughtUp(15_000)).toBe(true);
    expect(await b.replica.waitCaughtUp(15_000)).toBe(true);
    const sa = snapshot(a);
    expect(Object.keys(sa)).toHaveLength(3);
    expect(
      Object.values(sa)
        .map((x) => x.count)
        .sort(),
    ).toEqual([1, 1, 2]);
    expect(snapshot(b)).toEqual(sa);
    // The live feed listens to the store's changes: the replica that did not receive the batch has them too.
    expect(new Set(b.changed.map((x) => x.fingerprint))).toEqual(new Set(['f1', 'f2', 'f3']));
    for (const uid of Object.keys(sa)) expect(uid).toMatch(/^edge\/f\d\/[0-9a-f-]{36}$/);
  });

  it('changes status through the log, so every replica applies it at the same place', async () => {
    const f1 = (n: Node) => n.store.list({ limit: 100 }).alerts.find((x) => x.fingerprint === 'f1')!;
    const onB = await b.replica.changeStatus(f1(b).id, 'acknowledged', 'bob');
    expect(onB?.status).toBe('acknowledged');
    await a.replica.waitCaughtUp(15_000);
    expect(f1(a).status).toBe('acknowledged');

    // Resolved, then the same thing happens again: a new alert on both replicas.
    await a.replica.changeStatus(f1(a).id, 'resolved', 'alice');
    await a.replica.sink.accept('edge', [ev('f1')]);
    await a.replica.waitCaughtUp(15_000);
    await b.replica.waitCaughtUp(15_000);
    const open = (n: Node) => n.store.list({ limit: 100 }).alerts.filter((x) => x.fingerprint === 'f1');
    expect(
      open(a)
        .map((x) => x.status)
        .sort(),
    ).toEqual(['resolved', 'triggered']);
    expect(snapshot(b)).toEqual(snapshot(a));

    // Reopening the resolved one while a newer one is open is refused, as without Kafka.
    const old = open(b).find((x) => x.status === 'resolved')!;
    await expect(b.replica.changeStatus(old.id, 'triggered', 'bob')).rejects.toMatchObject({ name: 'VerdictError', code: 'VERDICT_CONFLICT' });
    const history = a.store.detail(open(a).find((x) => x.status === 'resolved')!.id)!.history;
    expect(history.map((h) => [h.to, h.actor])).toEqual([
      ['acknowledged', 'bob'],
      ['resolved', 'alice'],
    ]);
  });

  it('rebuilds a replica that lost its SQLite from the log', async () => {
    const before = snapshot(a);
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const c = await node('c', { holdProjection: hold });
    // Log partitions of the alerts each store write changed: the partitions a fetch brings are projected in one write.
    const writes: Set<number>[] = [];
    c.store.onChange((changes) => void writes.push(new Set(changes.map((x) => keyPartition(logKey(x.alert.agent, x.alert.fingerprint), 3)))));
    release();
    expect(await c.replica.waitCaughtUp(20_000)).toBe(true);
    expect(c.replica.caughtUp()).toBe(true);
    expect(snapshot(c)).toEqual(before);
    expect(new Set(writes.flatMap((w) => [...w])).size).toBeGreaterThan(1);
    expect(writes.some((w) => w.size > 1)).toBe(true);
    // A restarted replica resumes where its SQLite says, without reading the log again.
    await closeNode(c);
    const again = await node('c');
    expect(await again.replica.waitCaughtUp(20_000)).toBe(true);
    expect(snapshot(again)).toEqual(before);
    expect(again.changed).toHaveLength(0);
    await closeNode(again);
  });

  it('answers /readyz 503 with the reason while it builds its store from the log, 200 once it has; /healthz stays 200', async () => {
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const lines: { msg: string; level: number }[] = [];
    const capture = pino({ messageKey: 'msg', level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; level: number }) });
    const r = await node('rebuilding', { holdProjection: hold, log: capture });
    const app = await buildHttpServer({ store: r.store, tokens: r.tokens, log, ready: () => true, notReady: () => r.replica.notReady() });
    try {
      const res = await app.inject({ url: '/readyz' });
      expect(res.statusCode).toBe(503);
      const body = res.json<{ status: string; reason: string; behind: number }>();
      expect(body.status).toBe('catching_up');
      expect(body.reason).toMatch(
        /^this replica is building its store from the Kafka alert log: \d+ of the messages that were in the log at start-up are not in its store yet$/,
      );
      expect(body.behind).toBeGreaterThan(0);
      expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect(lines.map((l) => l.msg)).toContain("Kafka: building this replica's store from the alert log; /readyz answers 503 until it is done");
      expect(r.store.list({ limit: 100 }).alerts).toHaveLength(0);

      release();
      expect(await r.replica.waitCaughtUp(20_000)).toBe(true);
      expect(await eventually(async () => (await app.inject({ url: '/readyz' })).statusCode === 200)).toBe(true);
      expect((await app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
      expect(snapshot(r)).toEqual(snapshot(a));
      expect(await eventually(() => lines.some((l) => l.msg === "Kafka: this replica's store is up to date with the alert log; it is ready (/readyz)"))).toBe(
        true,
      );
    } finally {
      await app.close();
      await closeNode(r);
    }
  });

  it('delivers each change once across replicas, under a webhook-id derived from the alert, and shares the claims through the log', async () => {
    const rx = await new Receiver().listen();
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `w${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 4,
      session_timeout: '6s',
    });
    try {
      const [p, q] = [await node('wh-p', { config: own, webhookUrl: rx.url() }), await node('wh-q', { config: own, webhookUrl: rx.url() })];
      const batch = ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'].map((fp) => ev(fp));
      await p.replica.sink.accept('edge', batch.slice(0, 3));
      await q.replica.sink.accept('edge', batch.slice(3));
      expect(await p.replica.waitCaughtUp(15_000)).toBe(true);
      expect(await q.replica.waitCaughtUp(15_000)).toBe(true);
      const want = batch.map((e) => stableWebhookId('rx', `edge/${e.payload.fingerprint}/${e.id}`, 'triggered')).sort();
      await rx.waitForCount(6, 30_000);
      // Whichever replica owned an alert's partition: one delivery, its id derived from the alert.
      await new Promise((r) => setTimeout(r, 1_000));
      expect(rx.requests.map((x) => String(x.headers['webhook-id'])).sort()).toEqual(want);
      const rows = (n: Node) => (n.db.prepare('SELECT count(*) AS n FROM webhook_deliveries').get() as { n: number }).n;
      expect(rows(p) + rows(q)).toBe(6);
      // Both replicas know every claim: their own, and the other's from the log.
      const claimed = (n: Node) => (n.db.prepare("SELECT count(*) AS n FROM webhook_alert_events WHERE event = 'triggered'").get() as { n: number }).n;
      expect(await eventually(() => claimed(p) === 6 && claimed(q) === 6)).toBe(true);
      await closeNode(p);
      await closeNode(q);
    } finally {
      await rx.close();
    }
  }, 90_000);

  it('exports each alert change once, as JSON keyed by the alert id', async () => {
    const consumer = new Kafka({ clientId: 'export-test', brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).consumer({
      groupId: `export-test-${randomUUID()}`,
    });
    const got: { key: string; value: ExportedAlert }[] = [];
    try {
      await consumer.connect();
      await consumer.subscribe({ topic: cfg.export_topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => void got.push({ key: message.key!.toString(), value: JSON.parse(message.value!.toString()) as ExportedAlert }),
      });
      const deadline = Date.now() + 20_000;
      const want = Object.keys(snapshot(a));
      while (
        Date.now() < deadline &&
        !want.every((uid) => got.some((g) => g.key === uid && g.value.status === snapshot(a)[uid]!.status && g.value.count === snapshot(a)[uid]!.count))
      ) {
        await new Promise((r) => setTimeout(r, 200));
      }
      for (const uid of want) {
        const last = got.filter((g) => g.key === uid).at(-1)!;
        expect(last.value).toMatchObject({
          schema: 'verdict.alert/v1',
          id: uid,
          agent: 'edge',
          status: snapshot(a)[uid]!.status,
          count: snapshot(a)[uid]!.count,
          source: 'falco',
        });
        expect(last.value.falco).toBeTruthy();
      }
      // Once per change across replicas: no (partition, offset) of the log is exported twice.
      const changes = got.map((g) => `${g.value.change.log_partition}:${g.value.change.log_offset}`);
      expect(new Set(changes).size).toBe(changes.length);
    } finally {
      await consumer.disconnect();
    }
  });

  /**
   * A node of its own, with `export_window`, and a consumer of its export topic;
   * sends one event of `fp` at each of `times`, a second apart, so the delivery
   * member fetches each in a batch of its own (it reads every 0.5 s).
   */
  async function exportsOf(
    name: string,
    exportWindow: string,
    fp: string,
    times: string[],
    check: (got: { key: string; value: ExportedAlert; at: number }[], sent: number) => Promise<void>,
  ): Promise<void> {
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `x${randomUUID().slice(0, 8)}`,
      export_topic: `x${randomUUID().slice(0, 8)}.alerts`,
      export_window: exportWindow,
      partitions: 2,
      session_timeout: '6s',
    });
    const n = await node(name, { config: own });
    const consumer = new Kafka({ clientId: `${name}-test`, brokers: [broker.bootstrap], logLevel: logLevel.NOTHING }).consumer({
      groupId: `${name}-test-${randomUUID()}`,
    });
    const got: { key: string; value: ExportedAlert; at: number }[] = [];
    try {
      await consumer.connect();
      await consumer.subscribe({ topic: own.export_topic, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) =>
          void got.push({ key: message.key!.toString(), value: JSON.parse(message.value!.toString()) as ExportedAlert, at: Date.now() }),
      });
      const sent = Date.now();
      for (const time of times) {
        await n.replica.sink.accept('edge', [ev(fp, { time })]);
        await new Promise((r) => setTimeout(r, 1_000));
      }
      await check(got, sent);
    } finally {
      await consumer.disconnect();
      await closeNode(n);
    }
  }

  it('exports an alert that changed several times within the export window once, as it stands at its end, with the samples of every change', async () => {
    const times = ['2026-05-01T10:00:01.000Z', '2026-05-01T10:00:02.000Z', '2026-05-01T10:00:03.000Z'];
    await exportsOf('window', '4s', 'win', times, async (got) => {
      expect(await eventually(() => got.length > 0, 20_000)).toBe(true);
      // Past the next window: nothing else comes for it.
      await new Promise((r) => setTimeout(r, 5_000));
      expect(got).toHaveLength(1);
      // The first export already holds all three changes: it waited for the window's end (without the window it has count 1).
      const [only] = got;
      expect(only!.value).toMatchObject({ count: 3, events: 3, status: 'triggered', change: { kind: 'alert' } });
      expect(only!.value.samples.map((x) => (JSON.parse(x as string) as { time: string }).time)).toEqual(times);
    });
  }, 60_000);

  it('exports every change as it is fetched when export_window is 0s', async () => {
    const times = ['2026-05-02T10:00:01.000Z', '2026-05-02T10:00:02.000Z', '2026-05-02T10:00:03.000Z'];
    await exportsOf('nowindow', '0s', 'nowin', times, async (got) => {
      expect(await eventually(() => got.length >= 3, 20_000)).toBe(true);
      expect(got.map((x) => x.value.count)).toEqual([1, 2, 3]);
    });
  }, 60_000);

  it("acknowledges an agent batch whose events share one partition and together exceed Kafka's message size", async () => {
    // One noisy alert: the agent's batch of 500 events all lands in one log partition.
    // Kafka takes at most max.message.bytes (1 MB by default) per partition and request.
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `big${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 2,
      session_timeout: '6s',
    });
    const n = await node('big', { config: own });
    try {
      const sample = 'x'.repeat(3_000);
      const batch = Array.from({ length: 500 }, () => {
        const e = ev('burst');
        return { ...e, payload: { ...e.payload, samples: [sample] } };
      });
      const r = await n.replica.sink.accept('edge', batch);
      expect(r.stored).toBe(500);
      expect(await n.replica.waitCaughtUp(20_000)).toBe(true);
      expect(Object.values(snapshot(n))).toEqual([{ status: 'triggered', count: 500, events: 500 }]);
    } finally {
      await closeNode(n);
    }
  }, 60_000);

  const counted = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
  const cutEvents = () => counted('verdict_kafka_events_cut_total');

  it('stores an agent event too big for a Kafka message even without samples with its details cut, and warns naming them once however often it comes', async () => {
    // A Falco event with a 12 MB output field: the agent sends it whole (it fits a gRPC message), the log cannot take it whole.
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `huge${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 2,
      session_timeout: '6s',
    });
    const cap = capturingLogger('warn');
    const n = await node('huge', { config: own, log: cap.log });
    try {
      const e = ev('huge-field');
      const cmdline = 'x'.repeat(12_000_000);
      const falco = { ...e.payload.falco!, output_fields: { ...e.payload.falco!.output_fields, 'proc.cmdline': cmdline } };
      const cutBefore = await cutEvents();
      const batch = [{ ...e, payload: { ...e.payload, falco, samples: [{ n: 1 }] } }, ev('small')];
      expect((await n.replica.sink.accept('edge', batch)).stored).toBe(2);
      expect(await cutEvents()).toBe(cutBefore + 1);
      // The agent sends the batch again when the acknowledgement did not reach it (a reconnect).
      expect((await n.replica.sink.accept('edge', batch)).stored).toBe(2);
      expect(await cutEvents()).toBe(cutBefore + 1);
      expect(await n.replica.waitCaughtUp(20_000)).toBe(true);
      const row = n.db.prepare('SELECT t.details FROM alerts a JOIN alert_text t ON t.id = a.id WHERE a.fingerprint = ?').get('huge-field') as {
        details: string;
      };
      expect(JSON.parse(row.details)).toEqual({
        falco: { ...falco, output_fields: { ...falco.output_fields, 'proc.cmdline': `${'x'.repeat(2048)}…[cut ${12_000_000 - 2048} of 12000000 bytes]` } },
      });
      expect(Object.keys(snapshot(n))).toHaveLength(2);
      expect(cap.logs.filter((l) => l.msg.startsWith('Kafka: wrote an alert event larger than the Kafka message size'))).toEqual([
        expect.objectContaining({ level: 'warn', alert_id: e.id, cut: ['detail previews'], cut_details: ['falco.output_fields.proc.cmdline'] }),
      ]);
      expect(cap.logs.filter((l) => l.level === 'error')).toEqual([]);
    } finally {
      await closeNode(n);
    }
  }, 60_000);

  it('drops an agent event too big for a Kafka message even cut as far as it goes, stores the rest, and logs and counts it once however often it comes', async () => {
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `drop${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 2,
      session_timeout: '6s',
    });
    const cap = capturingLogger('warn');
    const n = await node('drop', { config: own, log: cap.log });
    try {
      // A rule name is never cut: nothing makes this event fit.
      const e = ev('too-big', { rule: 'r'.repeat(1_000_000) });
      const before = await counted('verdict_kafka_events_too_large_total');
      const batch = [e, ev('fits')];
      expect((await n.replica.sink.accept('edge', batch)).stored).toBe(1);
      expect((await n.replica.sink.accept('edge', batch)).stored).toBe(1);
      expect(await counted('verdict_kafka_events_too_large_total')).toBe(before + 1);
      expect(cap.logs.filter((l) => l.level === 'error')).toEqual([
        expect.objectContaining({ alert_id: e.id, msg: expect.stringMatching(/^Kafka: dropped an alert event larger than the Kafka message size/) }),
      ]);
      expect(await n.replica.waitCaughtUp(20_000)).toBe(true);
      expect(Object.values(snapshot(n))).toEqual([{ status: 'triggered', count: 1, events: 1 }]);
    } finally {
      await closeNode(n);
    }
  }, 60_000);

  it('sends the opening and the resolution of an alert resolved before the delivery group handed on its opening', async () => {
    // The delivery group runs behind the projection (a partition whose owner died waits
    // for the session timeout; a backlog after a broker restart): by the time it hands on
    // the event that opened an alert, the store may already say "resolved".
    const rx = await new Receiver().listen();
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `lag${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 2,
      session_timeout: '6s',
    });
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    try {
      const n = await node('lag', { config: own, webhookUrl: rx.url(), holdDelivery: hold });
      const [l1, l2] = [ev('l1'), ev('l2')];
      await n.replica.sink.accept('edge', [l1, l2]);
      expect(await n.replica.waitCaughtUp(15_000)).toBe(true);
      const a1 = n.store.list({ limit: 10 }).alerts.find((x) => x.fingerprint === 'l1')!;
      expect((await n.replica.changeStatus(a1.id, 'resolved', 'alice'))?.status).toBe('resolved');
      release();
      await rx.waitForCount(3, 30_000);
      await new Promise((r) => setTimeout(r, 1_000));
      const got = rx.requests
        .map((q) => {
          const doc = JSON.parse(q.body) as { type: string; data: { alerts: { fingerprint: string }[] } };
          return `${doc.data.alerts[0]!.fingerprint} ${doc.type} ${String(q.headers['webhook-id'])}`;
        })
        .sort();
      const id = (e: typeof l1, what: string) => stableWebhookId('rx', `edge/${e.payload.fingerprint}/${e.id}`, what);
      expect(got).toEqual(
        [`l1 alert.resolved ${id(l1, 'resolved')}`, `l1 alert.triggered ${id(l1, 'triggered')}`, `l2 alert.triggered ${id(l2, 'triggered')}`].sort(),
      );
      await closeNode(n);
    } finally {
      release();
      await rx.close();
    }
  }, 90_000);

  it('says so when two servers run with one replica id (a copied data_dir), instead of each showing half the log', async () => {
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `dup${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 4,
      session_timeout: '6s',
    });
    const first = await node('dup-1', { config: own });
    await first.replica.sink.accept('edge', [ev('d1'), ev('d2'), ev('d3'), ev('d4'), ev('d5'), ev('d6')]);
    expect(await first.replica.waitCaughtUp(15_000)).toBe(true);
    await closeNode(first);
    cpSync(join(dir, 'dup-1'), join(dir, 'dup-2'), { recursive: true });
    const lines: { msg: string; level: number }[] = [];
    const capture = pino({ messageKey: 'msg', level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; level: number }) });
    const [x, y] = await Promise.all([node('dup-1', { config: own, log: capture }), node('dup-2', { config: own, log: capture })]);
    try {
      expect(x.replica.replicaId).toBe(y.replica.replicaId);
      const clash = /^Kafka: another server runs with this replica's id/;
      expect(await eventually(() => lines.some((l) => clash.test(l.msg) && l.level >= 50), 30_000)).toBe(true);
      const why = x.replica.notReady() ?? y.replica.notReady();
      expect(why?.reason).toMatch(/data_dir/);
    } finally {
      await closeNode(x);
      await closeNode(y);
    }
  }, 90_000);

  it('answers a status change with 503 and what happened when Kafka cannot take it', async () => {
    const own = kafkaConfigForBootstrap(broker.bootstrap, {
      topic_prefix: `st${randomUUID().slice(0, 8)}`,
      export_topic: '',
      partitions: 1,
      session_timeout: '6s',
    });
    const n = await node('st', { config: own });
    await n.replica.sink.accept('edge', [ev('s1')]);
    expect(await n.replica.waitCaughtUp(15_000)).toBe(true);
    const id = n.store.list({ limit: 10 }).alerts[0]!.id;
    await n.replica.close();
    const err = await n.replica.changeStatus(id, 'acknowledged', 'bob').then(
      () => undefined,
      (e: unknown) => e as VerdictError,
    );
    expect(err?.httpStatus).toBe(503);
    expect(err?.code).toBe('VERDICT_KAFKA');
    expect(err?.message).toMatch(/^the alert log in Kafka is unavailable, so the status is not changed: .*; try again/);
    await closeNode(n);
  }, 60_000);

  it('refuses to start against unreachable brokers, saying which setting to check', async () => {
    const db = openServerDb(':memory:');
    try {
      const bad = kafkaConfigForBootstrap('127.0.0.1:1', { connection_timeout: '200ms' });
      await expect(
        startKafkaReplica({ config: bad, db, store: new AlertStore(db), agents: new AgentRegistry(db), tokens: new FeedTokens(db), log }),
      ).rejects.toThrow(/^cannot reach the Kafka brokers 127\.0\.0\.1:1: .*check kafka\.brokers/);
    } finally {
      db.close();
    }
  }, 60_000);

  it('refuses to start with settings the brokers refuse, saying which setting to change', async () => {
    const start = async (extra: Record<string, unknown>) => {
      const db = openServerDb(':memory:');
      try {
        const bad = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: `bad${randomUUID().slice(0, 8)}`, export_topic: '', ...extra });
        const r = await startKafkaReplica({ config: bad, db, store: new AlertStore(db), agents: new AgentRegistry(db), tokens: new FeedTokens(db), log });
        await r.joined.finally(() => r.close());
        return 'started';
      } catch (e) {
        return (e as Error).message;
      } finally {
        db.close();
      }
    };
    // One broker: three copies cannot be made.
    expect(await start({ replication_factor: 3 })).toMatch(/^Kafka cannot create .* with kafka\.replication_factor 3 .*lower kafka\.replication_factor/);
    // Above the brokers' default group.max.session.timeout.ms (30 min): refused as the config is read.
    expect(await start({ session_timeout: '2h' })).toMatch(
      /session_timeout: must be at most 1800000 ms \(brokers refuse more than group\.max\.session\.timeout\.ms/,
    );
  }, 90_000);

  it('shares agent and feed tokens between replicas, revocations included', async () => {
    const project = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-project-'))).dir;
    const { token, tokenId } = a.agents.register('edge', project);
    const feed = b.tokens.create('reader', 'read');
    const until = async (f: () => boolean) => {
      const end = Date.now() + 15_000;
      while (!f() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      return f();
    };
    expect(await until(() => Boolean(b.agents.authenticate(token)))).toBe(true);
    expect(await until(() => Boolean(a.tokens.verify(feed.token)))).toBe(true);
    a.agents.revokeToken('edge', tokenId);
    expect(await until(() => !b.agents.authenticate(token))).toBe(true);
  });
});
