// Two `verdict server` replicas on one real Kafka broker (scripts/kafka.sh),
// a real agent with two --kas-address values taking Falco events over HTTP,
// a feed client and a webhook receiver, all as processes on loopback.
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { restartBroker, startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { ConfigProject, freePort, killAll, spawnVerdict, until, verdictSync, type VerdictProcess } from '../helpers/processes.js';
import { newReplica, type Replica, SECRET, startReplica } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-e2e-'));
let broker: Broker | undefined;
const prefix = `e2e${randomUUID().slice(0, 8)}`;

const replicas: Record<'a' | 'b', Replica> = {} as Record<'a' | 'b', Replica>;
let agent: VerdictProcess;
let falcoAddr = '';
let feedToken = '';

// The webhook receiver: every delivery it got, by webhook-id, event and pod.
let receiver: Server;
const deliveries: { id: string; type: string; pod: string; fingerprint: string }[] = [];

function falcoEvent(i: number) {
  const pod = `web-${i}`;
  return {
    uuid: randomUUID(),
    time: new Date().toISOString(),
    rule: 'Terminal shell in container',
    priority: 'Notice',
    source: 'syscall',
    hostname: 'node-a',
    output: `A shell was spawned in a container with an attached terminal (user=root k8s_ns=shop k8s_pod_name=${pod} container_id=c${i})`,
    tags: ['container', 'shell'],
    output_fields: { 'k8s.ns.name': 'shop', 'k8s.pod.name': pod, 'container.id': `c${i}`, 'container.name': 'web', 'proc.name': 'bash', 'user.name': 'root' },
  };
}

const posted = new Set<number>();
const postErrors: string[] = [];
async function post(i: number): Promise<void> {
  // The agent answers 2xx once the event is in its spool; a refusal is retried like Falco would.
  await until(
    async () => {
      try {
        const res = await fetch(`http://${falcoAddr}/`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(falcoEvent(i)),
          signal: AbortSignal.timeout(3_000),
        });
        if (!res.ok) postErrors.push(`event ${i}: HTTP ${res.status} ${await res.text()}`);
        return res.ok ? true : undefined;
      } catch (e) {
        postErrors.push(`event ${i}: ${(e as Error).message}`);
        throw e;
      }
    },
    20_000,
    `the agent taking Falco event ${i} (${postErrors.slice(-3).join('; ')})`,
  );
  posted.add(i);
}

/** What a replica's feed lists: one entry per stored alert. */
async function stored(r: Replica): Promise<{ pod: string; count: number; status: string }[]> {
  const res = await fetch(`http://${r.http}/api/v1/alerts?limit=1000`, {
    headers: { authorization: `Bearer ${feedToken}` },
    signal: AbortSignal.timeout(5_000),
  });
  if (res.status !== 200) throw new Error(`replica ${r.name}'s feed answered HTTP ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { alerts: { labels: Record<string, string>; count: number; status: string }[] };
  return body.alerts.map((a) => ({ pod: a.labels.pod ?? '', count: a.count, status: a.status }));
}

/** Every posted event is exactly one alert with one occurrence, nothing else is there. */
async function exactlyOnce(r: Replica): Promise<string | undefined> {
  const rows = await stored(r);
  const byPod = new Map<string, number>();
  for (const x of rows) {
    if (x.count !== 1) return `${r.name}: ${x.pod} has count ${x.count}`;
    byPod.set(x.pod, (byPod.get(x.pod) ?? 0) + 1);
  }
  for (const i of posted) if (byPod.get(`web-${i}`) !== 1) return `${r.name}: web-${i} stored ${byPod.get(`web-${i}`) ?? 0} times`;
  if (rows.length !== posted.size) return `${r.name}: ${rows.length} alerts for ${posted.size} events`;
  return undefined;
}

/** Waits until exactlyOnce holds, then asserts it (so a failure says what differs). */
async function expectExactlyOnce(r: Replica, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let why: string | undefined;
  while (Date.now() < end) {
    why = await exactlyOnce(r).catch((e: Error) => e.message);
    if (!why) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  expect(why).toBeUndefined();
}

function serverYaml(r: Replica, hookUrl: string): string {
  return `data_dir: ${r.dataDir}
http_addr: ${r.http}
grpc_addr: ${r.grpc}
config_poll_interval: 200ms
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: rx
      type: generic
      url: ${hookUrl}
      secrets: [${SECRET}]
      retry_schedule: [1s, 2s, 5s]
kafka:
  brokers: [${broker!.bootstrap}]
  topic_prefix: ${prefix}
  export_topic: ${prefix}.alerts
  partitions: 6
  session_timeout: 6s
`;
}

beforeAll(async () => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));

  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      try {
        const m = JSON.parse(body) as { type: string; data: { alerts: { fingerprint: string; labels: Record<string, string> }[] } };
        for (const a of m.data.alerts)
          deliveries.push({ id: String(req.headers['webhook-id']), type: m.type, pod: a.labels.pod ?? '', fingerprint: a.fingerprint });
      } catch {
        // Counted as nothing; the assertions below would miss it.
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;

  for (const name of ['a', 'b'] as const) {
    replicas[name] = await newReplica(dir, name, (r) => serverYaml(r, hookUrl), `server-${name}`);
  }
  await Promise.all([startReplica(replicas.a), startReplica(replicas.b)]);

  falcoAddr = `127.0.0.1:${await freePort()}`;
  const project = new ConfigProject(join(dir, 'project'));
  project.commit({ '.gitlab/agents/edge/config.yaml': `falco:\n  http:\n    listen: ${falcoAddr}\n  dedup_window: 0s\n` });
  // Registered on A only: the tokens topic brings the token to B.
  const token = verdictSync(['agents', 'register', 'edge', '--config-project', project.dir, '--data-dir', replicas.a.dataDir]).trim();
  writeFileSync(join(dir, 'token'), token);
  feedToken = verdictSync(['tokens', 'create', '--name', 'feed', '--scope', 'write', '--data-dir', replicas.b.dataDir]).trim();
  await until(
    () => (JSON.parse(verdictSync(['agents', 'tokens', 'list', 'edge', '--json', '--data-dir', replicas.b.dataDir])) as unknown[]).length === 1 || undefined,
    20_000,
    'the agent token on replica B',
  );

  agent = spawnVerdict(
    [
      'agent',
      '--kas-address',
      `grpc://${replicas.a.grpc}`,
      '--kas-address',
      `grpc://${replicas.b.grpc}`,
      '--token-file',
      join(dir, 'token'),
      '--data-dir',
      join(dir, 'agent'),
      '--observability-addr',
      '',
      '--reconnect-initial',
      '100ms',
      '--reconnect-max',
      '1s',
    ],
    'agent',
  );
  await agent.waitForLog((l) => l.msg === 'Listening for Falco events over HTTP', 30_000, "the agent's Falco input");
}, 400_000);

afterAll(async () => {
  await killAll();
  receiver?.close();
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('two server replicas on one Kafka broker', () => {
  it('shows alerts from an agent connected to replica A live in the feed of replica B', async () => {
    // A feed client on B, on the live stream (WebSocket), before anything happens.
    const seen = new Set<string>();
    const ws = new WebSocket(`ws://${replicas.b.http}/api/v1/alerts/stream`, 'verdict.v1', { headers: { authorization: `Bearer ${feedToken}` } });
    try {
      await new Promise<void>((resolve, reject) => {
        ws.on('message', (data) => {
          const m = JSON.parse(String(data)) as { type: string; alerts?: { labels: Record<string, string> }[] };
          if (m.type === 'live') resolve();
          for (const a of m.alerts ?? []) seen.add(a.labels.pod ?? '');
        });
        ws.once('error', reject);
        ws.once('unexpected-response', (_req, res) => reject(new Error(`replica B's stream answered HTTP ${res.statusCode}`)));
      });
      for (let i = 0; i < 10; i++) await post(i);
      await until(
        () => (seen.size >= 10 ? true : undefined),
        20_000,
        () => `all 10 alerts on replica B's live stream (got ${seen.size})`,
      );
      expect([...seen].sort()).toEqual(Array.from({ length: 10 }, (_, i) => `web-${i}`).sort());
    } finally {
      ws.close();
    }
    await expectExactlyOnce(replicas.b, 10_000);
    await expectExactlyOnce(replicas.a, 10_000);
    // The agent is on A: B got them through the log.
    expect(agent.logs.some((l) => l.msg === 'Switched to another --kas-address')).toBe(false);
  });

  it("changes an alert's status on one replica and shows it on the other", async () => {
    const headers = { authorization: `Bearer ${feedToken}`, 'content-type': 'application/json' };
    const list = async (r: Replica) =>
      (
        (await (await fetch(`http://${r.http}/api/v1/alerts?limit=1000`, { headers })).json()) as {
          alerts: { id: number; status: string; labels: Record<string, string> }[];
        }
      ).alerts;
    const onB = (await list(replicas.b)).find((a) => a.labels.pod === 'web-3')!;
    const res = await fetch(`http://${replicas.b.http}/api/v1/alerts/${onB.id}`, {
      method: 'PATCH',
      headers,
      body: JSON.stringify({ status: 'acknowledged' }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as { alert: { status: string } }).alert.status).toBe('acknowledged');
    // Alert ids are per replica; A finds it by its labels and has the same status.
    await until(
      async () => ((await list(replicas.a)).find((a) => a.labels.pod === 'web-3')?.status === 'acknowledged' ? true : undefined),
      10_000,
      'the status change on replica A',
    );
  });

  it('moves the agent to replica B when A is killed with SIGKILL, losing nothing', async () => {
    // Whatever A was doing with its share of the webhooks: a delivery it recorded
    // and B records again goes out under the same webhook-id (checked below).
    await replicas.a.proc!.kill('SIGKILL');
    for (let i = 10; i < 40; i++) {
      await post(i);
      await new Promise((r) => setTimeout(r, 20));
    }
    await agent.waitForLog((l) => l.msg === 'Switched to another --kas-address', 20_000, 'the agent to switch to replica B');
    await expectExactlyOnce(replicas.b, 30_000);

    // A comes back and catches up from the log where its SQLite left off.
    await startReplica(replicas.a);
    await expectExactlyOnce(replicas.a, 30_000);
  }, 150_000);

  it('keeps every alert, once, across a broker restart in the middle of the stream', async () => {
    let stop = false;
    let next = 40;
    const stream = (async () => {
      while (!stop && next < 400) {
        await post(next++);
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    stream.catch(() => undefined);
    await until(() => (next >= 70 ? true : undefined), 20_000, 'the stream to get going');
    await restartBroker(broker!, 2_000);
    const after = next;
    await Promise.race([stream, until(() => (next >= after + 40 ? true : undefined), 60_000, 'the stream to go on after the restart')]);
    stop = true;
    await stream;
    await expectExactlyOnce(replicas.b, 60_000);
    await expectExactlyOnce(replicas.a, 30_000);
    const view = async (r: Replica) => (await stored(r)).map((x) => `${x.pod}:${x.status}:${x.count}`).sort();
    expect(await view(replicas.a)).toContain('web-3:acknowledged:1');
    expect(await view(replicas.a)).toEqual(await view(replicas.b));
  }, 240_000);

  it('delivers each alert to the webhook receiver once, whichever replica received it', async () => {
    const want = [...posted].map((i) => `web-${i}`);
    const missing = () => want.filter((p) => !deliveries.some((d) => d.pod === p));
    try {
      await until(() => (missing().length === 0 ? true : undefined), 60_000, 'a webhook for every alert');
    } catch (e) {
      const metrics = await Promise.all(
        Object.values(replicas).map(
          async (r) =>
            `${r.name}: ${(await (await fetch(`http://${r.http}/metrics`)).text())
              .split('\n')
              .filter((l) => /^verdict_(kafka_delivery|webhook)/.test(l))
              .join(' | ')}`,
        ),
      );
      throw new Error(`${(e as Error).message}: missing ${missing().length} of ${want.length} (${missing().slice(0, 10).join(', ')}); ${metrics.join('\n')}`);
    }
    // Anything sent twice would arrive within the retry schedule.
    await new Promise((r) => setTimeout(r, 3_000));
    // A receiver that de-duplicates on webhook-id (the Standard Webhooks contract) gets
    // each alert once: one webhook-id per alert, however many replicas sent it.
    const ids = new Map<string, Set<string>>();
    for (const d of deliveries.filter((x) => x.type === 'alert.triggered')) (ids.get(d.pod) ?? ids.set(d.pod, new Set()).get(d.pod)!).add(d.id);
    const twice = [...ids].filter(([, s]) => s.size > 1).map(([pod]) => pod);
    expect(twice).toEqual([]);
    expect([...ids.keys()].sort()).toEqual(want.sort());
  }, 120_000);
});
