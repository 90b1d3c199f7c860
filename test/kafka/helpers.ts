// What the Kafka replica tests share: `verdict server` replicas as processes
// on one real broker, where their alerts land in the log, and the setup of a
// pair of which one is killed by the delivery fault injection.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import { TestPublisher } from '../../src/server/kafka/testing.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { ConfigProject, freePort, spawnVerdict, until, verdictSync, type LogLine, type VerdictProcess } from '../helpers/processes.js';

export const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
export const PARTITIONS = 6;
export const KILL_LOG = /^Test fault injection: killing this replica/;
const ASSIGNED = 'Kafka: this replica delivers webhooks and the export for these log partitions';

export interface Replica {
  name: string;
  dataDir: string;
  config: string;
  http: string;
  grpc: string;
  proc?: VerdictProcess;
}

// Kafka's default partitioner (murmur2 of the key), as the servers use it.
const partitioner = kafkajs.Partitioners.DefaultPartitioner();
const meta = Array.from({ length: PARTITIONS }, (_, i) => ({ partitionId: i, leader: 0, partitionErrorCode: 0, replicas: [0], isr: [0], offlineReplicas: [] }));

/** The log partition of agent edge's alert with this fingerprint. */
export const partitionOf = (fp: string) => partitioner({ topic: 'log', partitionMetadata: meta, message: { key: `edge/${fp}`, value: null } });

/** A fingerprint whose alert lands in one of these log partitions. */
export function fingerprintIn(partitions: number[], tag: string): string {
  for (let i = 0; ; i++) if (partitions.includes(partitionOf(`${tag}-${i}`))) return `${tag}-${i}`;
}

/** A replica on free loopback ports; `yaml` writes its config file from them. */
export async function newReplica(dir: string, name: string, yaml: (r: Replica) => string, file = name): Promise<Replica> {
  const r: Replica = {
    name,
    dataDir: join(dir, file),
    config: join(dir, `${file}.yaml`),
    http: `127.0.0.1:${await freePort()}`,
    grpc: `127.0.0.1:${await freePort()}`,
  };
  writeFileSync(r.config, yaml(r));
  return r;
}

export async function startReplica(r: Replica, flags: string[] = []): Promise<VerdictProcess> {
  r.proc = spawnVerdict(['server', '--config', r.config, ...flags], `server-${r.name}`);
  await r.proc.waitForLog((l) => l.msg === 'Verdict server started', 60_000, `replica ${r.name} to start`);
  return r.proc;
}

/** The log partitions a replica's delivery group member got at its last join. */
export function assigned(r: Replica): number[] | undefined {
  return (r.proc!.logs.filter((l) => l.msg === ASSIGNED).at(-1) as (LogLine & { partitions: number[] }) | undefined)?.partitions;
}

/** Publishes one event per fingerprint over the agent API; returns their event ids. A replica killed meanwhile may not answer. */
export async function publish(r: Replica, token: string, fps: string[]): Promise<string[]> {
  const events = fps.map((fp) => ({ id: randomUUID(), payload: falcoPayload({ fp }) }));
  const pub = new TestPublisher(r.grpc, token);
  try {
    await pub.send(events, 15_000).catch(() => undefined);
  } finally {
    pub.close();
  }
  return events.map((e) => e.id);
}

/**
 * Two replicas A (started with `--test-kill-delivery-at killAt`) and B, each
 * delivering for half of the partitions, with agent edge registered and a
 * write feed token; `yaml` gives a replica's config.
 */
export async function killablePair(dir: string, prefix: string, killAt: 'after_outbox' | 'after_claims', yaml: (r: Replica) => string) {
  const [a, b] = [await newReplica(dir, 'a', yaml, `${prefix}-a`), await newReplica(dir, 'b', yaml, `${prefix}-b`)];
  const project = join(dir, `${prefix}-project`);
  new ConfigProject(project).commit({ 'README.md': 'agents\n' });
  const token = verdictSync(['agents', 'register', 'edge', '--config-project', project, '--data-dir', a.dataDir]).trim();
  await startReplica(a, ['--test-kill-delivery-at', killAt]);
  await startReplica(b);
  // After B's first start, which creates its database: `verdict tokens` refuses a data directory without one.
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
  return { a, b, token, feedToken, partitionsOfA: assigned(a)!, partitionsOfB: assigned(b)! };
}
