// Grouped and Alertmanager deliveries across two `verdict server` replicas on
// one real broker, when one is killed (`--test-kill-delivery-at after_outbox`)
// after recording a delivery and before publishing its claims: the next owner
// records the dead replica's alerts again, grouped with what came since.
//   - group_window: one webhook-id always carries one set of alerts, so a
//     receiver that de-duplicates on webhook-id loses no alert;
//   - Alertmanager: groupKey and labels are the same whichever replica sends,
//     so the resolved notification matches the firing one.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, stopBroker, TestPublisher, type Broker } from '../../src/server/kafka/testing.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { ConfigProject, freePort, killAll, spawnVerdict, until, verdictSync, type LogLine, type VerdictProcess } from '../helpers/processes.js';
import { Receiver } from '../webhooks/receiver.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const PARTITIONS = 6;
const KILL_LOG = /^Test fault injection: killing this replica/;
const ASSIGNED = 'Kafka: this replica delivers webhooks and the export for these log partitions';

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-grouped-'));
let broker: Broker | undefined;
const grouped = new Receiver();
const am = new Receiver();

const partitioner = kafkajs.Partitioners.DefaultPartitioner();
const meta = Array.from({ length: PARTITIONS }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0], offlineReplicas: [] }));
const partitionOf = (fp: string) => partitioner({ topic: 'log', partitionMetadata: meta, message: { key: `edge/${fp}`, value: null } });

function fingerprintIn(partitions: number[], tag: string): string {
  for (let i = 0; ; i++) if (partitions.includes(partitionOf(`${tag}-${i}`))) return `${tag}-${i}`;
}

interface Replica {
  name: string;
  dataDir: string;
  config: string;
  http: string;
  grpc: string;
  proc?: VerdictProcess;
}

interface AmDoc {
  groupKey: string;
  status: string;
  groupLabels: Record<string, string>;
  alerts: { status: string; labels: Record<string, string>; fingerprint: string }[];
}

async function replica(name: string, prefix: string): Promise<Replica> {
  const r: Replica = {
    name,
    dataDir: join(dir, `${prefix}-${name}`),
    config: join(dir, `${prefix}-${name}.yaml`),
    http: `127.0.0.1:${await freePort()}`,
    grpc: `127.0.0.1:${await freePort()}`,
  };
  writeFileSync(
    r.config,
    `data_dir: ${r.dataDir}
http_addr: ${r.http}
grpc_addr: ${r.grpc}
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: gengrp
      type: generic
      url: ${grouped.url()}
      secrets: [${SECRET}]
      group_window: 3s
      retry_schedule: [200ms, 500ms, 1s]
    - name: am
      type: alertmanager
      url: ${am.url()}
      retry_schedule: [200ms, 500ms, 1s]
kafka:
  brokers: [${broker!.bootstrap}]
  topic_prefix: ${prefix}
  export_topic: ""
  partitions: ${PARTITIONS}
  session_timeout: 6s
`,
  );
  return r;
}

async function start(r: Replica, flags: string[] = []): Promise<VerdictProcess> {
  r.proc = spawnVerdict(['server', '--config', r.config, ...flags], `server-${r.name}`);
  await r.proc.waitForLog((l) => l.msg === 'Verdict server started', 60_000, `replica ${r.name} to start`);
  return r.proc;
}

function assigned(r: Replica): number[] | undefined {
  return (r.proc!.logs.filter((l) => l.msg === ASSIGNED).at(-1) as (LogLine & { partitions: number[] }) | undefined)?.partitions;
}

async function publish(r: Replica, token: string, fps: string[]): Promise<void> {
  const pub = new TestPublisher(r.grpc, token);
  try {
    await pub
      .send(
        fps.map((fp) => ({ id: randomUUID(), payload: falcoPayload({ fp }) })),
        15_000,
      )
      .catch(() => undefined);
  } finally {
    pub.close();
  }
}

/** The grouped receiver's requests: webhook-id -> the fingerprints of each request under it. */
function groupedById(): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  for (const q of grouped.requests) {
    const doc = JSON.parse(q.body) as { data: { alerts: { fingerprint: string }[] } };
    const id = String(q.headers['webhook-id']);
    (out.get(id) ?? out.set(id, []).get(id)!).push(doc.data.alerts.map((a) => a.fingerprint).sort());
  }
  return out;
}

/** The Alertmanager notifications about an alert (found by the `fingerprint` field, the same in every version). */
const amOf = (fp: string) => {
  const hash = createHash('sha256').update(`edge/${fp}`).digest('hex').slice(0, 16);
  return am.requests.map((q) => JSON.parse(q.body) as AmDoc).filter((d) => d.alerts.some((al) => al.fingerprint === hash));
};
const amFor = (fp: string, status: string) => amOf(fp).filter((d) => d.status === status);

beforeAll(async () => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  await grouped.listen();
  await am.listen();
}, 320_000);

afterAll(async () => {
  await killAll();
  await grouped.close();
  await am.close();
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('grouped and Alertmanager deliveries when a replica dies after recording them', () => {
  it('sends one set of alerts per webhook-id, and Alertmanager groupKeys and labels that do not depend on the replica', async () => {
    const prefix = `grp${randomUUID().slice(0, 8)}`;
    const [a, b] = [await replica('a', prefix), await replica('b', prefix)];
    const project = join(dir, `${prefix}-project`);
    new ConfigProject(project).commit({ 'README.md': 'agents\n' });
    const token = verdictSync(['agents', 'register', 'edge', '--config-project', project, '--data-dir', a.dataDir]).trim();
    await start(a, ['--test-kill-delivery-at', 'after_outbox']);
    await start(b);
    const feedToken = verdictSync(['tokens', 'create', '--name', 'ops', '--scope', 'write', '--data-dir', b.dataDir]).trim();
    await until(
      () => (assigned(a)?.length === PARTITIONS / 2 && assigned(b)?.length === PARTITIONS / 2 ? true : undefined),
      60_000,
      'both replicas in the delivery group',
    );
    await until(
      () => (JSON.parse(verdictSync(['agents', 'tokens', 'list', 'edge', '--json', '--data-dir', b.dataDir])) as unknown[]).length === 1 || undefined,
      20_000,
      'the agent token on replica B',
    );

    // X is recorded by A (a group of one, and an Alertmanager firing), which dies before its claims are in the log.
    const x = fingerprintIn(assigned(a)!, 'gx');
    await publish(a, token, [x]);
    await a.proc!.waitForLog((l) => KILL_LOG.test(l.msg), 30_000, 'replica a to be killed by the fault injection');
    await a.proc!.exited;
    // Z comes after X in the same partition: B, taking A's partitions over, groups X with Z.
    const z = fingerprintIn([partitionOf(x)], 'gz');
    await publish(b, token, [z]);
    await grouped.waitFor(() => [...groupedById().values()].flat(2).includes(z), 60_000, 'the group with Z from replica B');
    await am.waitFor(() => amOf(x).length >= 1, 30_000, 'X firing from replica B');

    // B resolves X, which only B's outbox knows was sent firing (A's claims never reached the log).
    const headers = { authorization: `Bearer ${feedToken}`, 'content-type': 'application/json' };
    const list = (await (await fetch(`http://${b.http}/api/v1/alerts?limit=100`, { headers })).json()) as { alerts: { id: number; fingerprint: string }[] };
    const onB = list.alerts.find((al) => al.fingerprint === x)!;
    const res = await fetch(`http://${b.http}/api/v1/alerts/${onB.id}`, { method: 'PATCH', headers, body: JSON.stringify({ status: 'resolved' }) });
    expect(res.status, await res.clone().text()).toBe(200);
    await am.waitFor(() => amFor(x, 'resolved').length >= 1, 30_000, 'X resolved from replica B');

    // A comes back and sends what its outbox holds: X alone in its group, X firing.
    const firingBefore = amFor(x, 'firing').length;
    const groupsBefore = grouped.requests.length;
    await start(a);
    await am.waitFor(() => amFor(x, 'firing').length > firingBefore, 30_000, 'X firing from replica A');
    await grouped.waitFor(() => grouped.requests.length > groupsBefore, 30_000, "A's group");
    await new Promise((r) => setTimeout(r, 1_500));

    // Every webhook-id carries one set of alerts; the distinct ids together carry X and Z.
    const byId = groupedById();
    for (const [id, sets] of byId) for (const s of sets) expect(s, id).toEqual(sets[0]);
    const kept = new Set([...byId.values()].flatMap((sets) => sets[0]!));
    expect([...kept].sort()).toEqual([x, z].sort());

    // The firing notifications (from A and B) and the resolved one (from B): one groupKey, one label set.
    const docs = amOf(x);
    expect(docs.map((d) => d.status).sort()).toEqual(['firing', 'firing', 'resolved']);
    const key = `{}/{verdict_integration="am"}:{agent="edge",verdict_fingerprint="${x}"}`;
    for (const d of docs) {
      expect(d.groupKey).toBe(key);
      expect(d.alerts[0]!.labels).toEqual(docs[0]!.alerts[0]!.labels);
      expect(Object.keys(d.alerts[0]!.labels)).not.toContain('verdict_alert_id');
    }
    await Promise.all([a.proc!.kill(), b.proc!.kill()]);
  }, 240_000);
});
