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
import type { IntegrationRegistry, IntegrationShare } from '../../src/server/webhooks/integrations.js';
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

async function replica(name: string, logger: Logger = log.child({ replica: name }), integrations: unknown[] = []): Promise<RunningServer> {
  const s = await startServer(
    {
      ...SERVER_DEFAULTS,
      data_dir: join(dir, name),
      http_addr: '127.0.0.1:0',
      grpc_addr: '127.0.0.1:0',
      config_poll_interval: 60_000,
      kafka,
      webhooks: parseWebhooksJson({ allow_private_addresses: ['127.0.0.1'], integrations }),
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
  const list = async (on: RunningServer, name = 'sec') => ((await api(on, 'GET', '')).body.integrations as View[]).filter((i) => i.name === name);
  const reg = (on: RunningServer): IntegrationRegistry => on.webhooks.registry!;
  /** The registry's way to the tokens topic: what its 410 branch publishes through. */
  const share = (on: RunningServer) => (reg(on) as unknown as { share: IntegrationShare }).share;
  const make = async (on: RunningServer, name: string, path = `/${name}`) => {
    const made = await api(on, 'POST', '', { name, type: 'generic', url: receiver.url(path), secrets: [SECRET], ...FAST });
    expect(made.status).toBe(201);
    await until(async () => (servers.every((s) => reg(s).byName(name)) ? true : undefined), 20_000, `"${name}" on every replica`);
  };
  /** Resolves once the disablements queued on a replica are in Kafka (or given up on), so a barrier comes after them. */
  const flushed = (on: RunningServer) =>
    until(
      () => {
        const q = share(on) as unknown as { integrationQueue: unknown[]; publishing: boolean };
        return q.integrationQueue.length === 0 && !q.publishing ? true : undefined;
      },
      20_000,
      'the queued disablements written to Kafka',
    );
  /** Resolves once every replica has read all written to the tokens topic before this call (one partition: log order). */
  const barrier = async (on: RunningServer) => {
    const name = `barrier-${randomUUID().slice(0, 8)}`;
    await make(on, name);
  };
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

  it('a 410 to a try made with the old endpoint changes nothing on any replica', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    await make(a, 'moved', '/moved-old');
    const old = reg(a).byName('moved')!;
    expect((await api(b, 'PATCH', '/moved', { url: receiver.url('/moved-new') })).status).toBe(200);
    await until(() => (reg(a).byName('moved')?.spec.url.endsWith('/moved-new') ? true : undefined), 20_000, "B's new url on A");
    // A try A began with the old endpoint gets its 410 now: the new endpoint is not disabled.
    expect(reg(a).disable(old.id, 'the endpoint answered 410 Gone', { integration: old, at: Date.now() })).toBe(false);
    await barrier(b);
    for (const s of [a, b]) {
      expect(reg(s).byName('moved')!.disabled_reason).toBeNull();
      expect(reg(s).byName('moved')!.spec.url).toMatch(/\/moved-new$/);
    }
  }, 120_000);

  it('a 410 disablement written after a deletion does not bring the integration back', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    await make(a, 'removed');
    // Deleted on B, while A, not having read that yet, disables it for a 410 and writes that (as the previous release
    // wrote it, and as this one does): the deletion stands everywhere.
    const gone = reg(a).byName('removed')!;
    expect((await api(b, 'DELETE', '/removed')).status).toBe(200);
    await until(() => (reg(a).byName('removed') ? undefined : true), 20_000, 'deleted on A');
    const at = new Date().toISOString();
    const stale = { name: 'removed', disabled_reason: 'the endpoint answered 410 Gone', disabled_at: at, change: randomUUID() };
    await share(a).publish(
      { kind: 'integration', origin: 'api', spec: gone.spec, deleted: false, created_at: gone.created_at, updated_at: at, ...stale } as never,
      false,
    );
    await flushed(a);
    await barrier(b);
    for (const s of [a, b]) expect(reg(s).byName('removed')).toBeUndefined();
    const { specChange } = await import('../../src/server/webhooks/integrations.js');
    await share(a).publish({ kind: 'integration_state', spec_change: specChange(gone), ...stale, change: randomUUID() } as never, false);
    await flushed(a);
    await barrier(b);
    for (const s of [a, b]) expect(reg(s).byName('removed')).toBeUndefined();
  }, 120_000);

  it('a 410 to a try begun before the integration was enabled does not disable it again', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    await make(a, 'again');
    const before = reg(a).byName('again')!;
    const began = Date.now();
    expect(reg(a).disable(before.id, 'the endpoint answered 410 Gone', { integration: before, at: began })).toBe(true);
    await until(() => (reg(b).byName('again')?.disabled_reason ? true : undefined), 20_000, 'disabled on B');
    expect((await api(b, 'POST', '/again/enable')).status).toBe(200);
    await until(() => (reg(a).byName('again')?.disabled_reason === null ? true : undefined), 20_000, 'enabled on A');
    // Another try, in flight together with the first, gets its 410 only now.
    expect(reg(a).disable(before.id, 'the endpoint answered 410 Gone', { integration: before, at: began })).toBe(false);
    await barrier(a);
    for (const s of [a, b]) expect(reg(s).byName('again')!.disabled_reason).toBeNull();
  }, 120_000);

  it('a replica started later has read the integrations when it joins, and delivers their alerts', async () => {
    const [a] = servers as [RunningServer];
    await make(a, 'early');
    const d = await replica('d');
    // Its delivery member took partitions only after this: an alert for an integration not read yet would be skipped.
    expect(reg(d).byName('early')).toBeDefined();
    await sendAndReceive(d, 'late', 20);
  }, 120_000);

  it("a 410 on a replica whose server.yaml defines an API-made integration's name disables nothing elsewhere", async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    await make(a, 'dup');
    const e = await replica('e', undefined, [{ name: 'dup', type: 'generic', url: receiver.url('/dup-config'), secrets: [SECRET], ...FAST }]);
    const own = reg(e).byName('dup')!;
    expect(own.origin).toBe('config');
    expect(reg(e).disable(own.id, 'the endpoint answered 410 Gone', { integration: own, at: Date.now() })).toBe(true);
    await flushed(e);
    await barrier(a);
    for (const s of [a, b]) expect(reg(s).byName('dup')).toMatchObject({ origin: 'api', disabled_reason: null });
    await e.close();
    servers.splice(servers.indexOf(e), 1);
  }, 120_000);

  it('a disablement Kafka has not taken yet is dropped when an enable is read first', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    await make(a, 'queued');
    const cur = reg(a).byName('queued')!;
    // Kafka does not take A's writes for now: its disablement waits in the queue (the publisher is held busy, as while
    // an append to an unavailable Kafka is being retried).
    const sync = share(a) as unknown as { integrationQueue: unknown[]; publishing: boolean };
    sync.publishing = true;
    const at = new Date().toISOString();
    const disabled = { name: 'queued', disabled_reason: 'the endpoint answered 410 Gone', disabled_at: at };
    const { specChange } = await import('../../src/server/webhooks/integrations.js');
    sync.integrationQueue.push({ kind: 'integration_state', spec_change: specChange(cur), ...disabled, change: randomUUID() });
    // Meanwhile enabled on B, and A reads that.
    expect((await api(b, 'POST', '/queued/enable')).status).toBe(200);
    await barrier(b);
    // Kafka is back: what A sends must not undo the enable.
    sync.publishing = false;
    await share(a).publish(undefined as never, false);
    await flushed(a);
    await barrier(b);
    for (const s of [a, b]) expect(reg(s).byName('queued')!.disabled_reason).toBeNull();
  }, 120_000);

  it('a 410 for a URL server.yaml no longer has is not applied by a replica started later', async () => {
    const cfg = (path: string) => [{ name: 'cfg', type: 'generic', url: receiver.url(path), secrets: [SECRET], ...FAST }];
    const e = await replica('e2', undefined, cfg('/cfg-old'));
    const own = reg(e).byName('cfg')!;
    expect(reg(e).disable(own.id, 'the endpoint answered 410 Gone', { integration: own, at: Date.now() })).toBe(true);
    await flushed(e);
    await barrier(e);
    await e.close();
    servers.splice(servers.indexOf(e), 1);
    // server.yaml now points at another URL: a replica started with it reads the topic from its start.
    const f = await replica('f', undefined, cfg('/cfg-new'));
    await barrier(f);
    expect(reg(f).byName('cfg')).toMatchObject({ origin: 'config', disabled_reason: null });
    await f.close();
    servers.splice(servers.indexOf(f), 1);
  }, 120_000);

  it('two replicas creating one name: one is created (201), the other answered 409, and every replica has the first', async () => {
    const [a, b] = servers as [RunningServer, RunningServer];
    const body = (path: string) => ({ name: 'twice', type: 'generic', url: receiver.url(path), secrets: [SECRET], ...FAST });
    const [onA, onB] = await Promise.all([api(a, 'POST', '', body('/twice-a')), api(b, 'POST', '', body('/twice-b'))]);
    expect([onA.status, onB.status].sort()).toEqual([201, 409]);
    const won = onA.status === 201 ? '/twice-a' : '/twice-b';
    await barrier(a);
    for (const s of [a, b]) expect(reg(s).byName('twice')!.spec.url).toMatch(new RegExp(`${won}$`));
  }, 120_000);
});
