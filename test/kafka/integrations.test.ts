// Webhook integrations made through the admin API, and a 410 disablement and
// its enable, reach every Kafka replica through the tokens topic, in log
// order, so every alert is delivered whichever replica owns its log partition;
// a replica started later learns them, and a deletion. Servers in this
// process on a real broker (scripts/kafka.sh), a real receiver on loopback.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import { createRootLogger, type Logger } from '../../src/shared/log/logger.js';
import { tempDir, until } from '../helpers/processes.js';
import { falco, FAST, SECRET } from '../webhooks/helpers.js';
import { Receiver } from '../webhooks/receiver.js';

const dir = tempDir('verdict-kafka-integrations-');
const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
let broker: Broker;
let kafka: KafkaConfig;
const servers: RunningServer[] = [];
const receiver = new Receiver();

async function replica(name: string, logger: Logger = log.child({ replica: name })): Promise<RunningServer> {
  const s = await startServer(
    {
      ...SERVER_DEFAULTS,
      data_dir: join(dir, name),
      http_addr: '127.0.0.1:0',
      grpc_addr: '127.0.0.1:0',
      config_poll_interval: 60_000,
      kafka,
      webhooks: parseWebhooksJson({ allow_private_addresses: ['127.0.0.1'] }),
    },
    logger,
  );
  servers.push(s);
  await s.kafka!.joined;
  return s;
}

beforeAll(async () => {
  await receiver.listen();
  broker = startBroker(tempDir('verdict-kafka-state-'));
  // Two partitions, so each of two replicas owns the deliveries of some alerts.
  kafka = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: `t${randomUUID().slice(0, 8)}`, partitions: 2, session_timeout: '6s' });
}, 320_000);

afterAll(async () => {
  for (const s of servers.reverse()) await s.close().catch(() => undefined);
  await receiver.close();
  if (broker) stopBroker(broker);
}, 90_000);

interface View {
  name: string;
  state: string;
  route: { min_severity?: string };
  disabled_at: string | null;
}

describe('webhook integrations across Kafka replicas', () => {
  let admin = '';
  const api = async (on: RunningServer, method: string, path: string, body?: unknown) => {
    const res = await fetch(`http://${on.httpAddress}/api/v1/admin/integrations${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const list = async (on: RunningServer) => ((await api(on, 'GET', '')).body.integrations as View[]).filter((i) => i.name === 'sec');
  const stateOn = async (on: RunningServer) => (await list(on))[0]?.state;

  /** Alerts with fingerprints `${tag}-0` ...; resolves once the receiver has had each of them. */
  const sendAndReceive = async (a: RunningServer, tag: string, n: number) => {
    const fps = Array.from({ length: n }, (_, i) => `${tag}-${i}`);
    await a.kafka!.sink.accept(
      'edge',
      fps.map((fp) => ({ id: randomUUID(), payload: falco({ fingerprint: fp }) })),
    );
    const got = () => new Set(receiver.requests.filter((r) => r.method === 'POST').flatMap((r) => fps.filter((fp) => r.body.includes(`"${fp}"`))));
    await until(
      () => (got().size === n ? true : undefined),
      30_000,
      () => `the receiver getting all ${n} "${tag}" alerts (got ${got().size})`,
    );
  };

  it('are made, disabled on 410, enabled and deleted on every replica, and a later replica learns them', async () => {
    const a = await replica('a');
    const b = await replica('b');
    admin = a.tokens.create('ops', 'admin').token;
    await until(() => b.tokens.verify(admin) ?? undefined, 30_000, 'the admin token on replica B');

    const made = await api(a, 'POST', '', { name: 'sec', type: 'generic', url: receiver.url('/sec'), secrets: [SECRET], ...FAST });
    expect(made.status).toBe(201);
    await until(async () => ((await list(b)).length === 1 ? true : undefined), 20_000, 'the integration made on A listed by B');
    // Whichever replica owns an alert's partition records its delivery.
    await sendAndReceive(a, 'first', 20);

    // Changed on B: A has the change.
    expect((await api(b, 'PATCH', '/sec', { route: { min_severity: 'low' } })).status).toBe(200);
    await until(async () => ((await list(a))[0]?.route.min_severity === 'low' ? true : undefined), 20_000, "B's change on A");

    // The receiver is gone: the first 410 disables the integration on both.
    let gone = true;
    receiver.answer = () => (gone ? { status: 410 } : { status: 200 });
    await a.kafka!.sink.accept('edge', [{ id: randomUUID(), payload: falco({ fingerprint: 'gone' }) }]);
    await until(async () => ((await stateOn(a)) === 'disabled' && (await stateOn(b)) === 'disabled' ? true : undefined), 30_000, 'disabled on A and B');
    const [onA, onB] = [(await list(a))[0]!, (await list(b))[0]!];
    expect(onB.disabled_at).toBe(onA.disabled_at);

    // Back, and enabled on A only: B delivers again too.
    gone = false;
    const enabled = await api(a, 'POST', '/sec/enable');
    expect(enabled.status).toBe(200);
    expect((enabled.body.integration as View).state).toBe('active');
    await until(async () => ((await stateOn(b)) === 'active' ? true : undefined), 20_000, 'enabled on B');
    await sendAndReceive(a, 'second', 20);

    // A replica started later has the integration as it is now.
    const c = await replica('c');
    await until(async () => ((await list(c))[0]?.state === 'active' ? true : undefined), 30_000, 'the integration on replica C');
    expect((await list(c))[0]!.route.min_severity).toBe('low');

    // Deleted on B: gone everywhere; a name taken again starts afresh.
    const deleted = await api(b, 'DELETE', '/sec');
    expect(deleted.status).toBe(200);
    expect(await list(b)).toEqual([]);
    await until(async () => ((await list(a)).length === 0 && (await list(c)).length === 0 ? true : undefined), 20_000, 'deleted on A and C');
  }, 240_000);
});
