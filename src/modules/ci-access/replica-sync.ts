import { networkInterfaces } from 'node:os';
import { Partitioners, type Consumer, type Kafka as KafkaClient, type Producer } from 'kafkajs';
import type { AgentRegistry } from '../../server/agents/agent-registry.js';
import { createKafkaClient, explainKafkaError, topicsOf } from '../../server/kafka/client.js';
import { replicaId } from '../../server/kafka/db.js';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AgentTunnels } from './agent-tunnels.js';
import type { JobTokens, SharedJobToken } from './job-tokens.js';
import type { ForwardTarget } from './replica-forward.js';

// What Kafka replicas share for the CI/CD tunnel, on the compacted
// <prefix>.tokens topic the core already shares agent and feed tokens on (no
// new topic, no new ACL; the core's reader skips these kinds):
//
// - CI job tokens (`ci_job:<hash>` → the row, hash only): a token issued on
//   one replica's data dir must authenticate on every replica, and a
//   revocation anywhere must hold everywhere (one-way, as for agent tokens).
// - Which replica holds Connect calls of which agent (`ci_route:<agent>:<replica>`
//   → its proxy's internal address): a request at a replica without a call of
//   the agent is forwarded there (replica-forward.ts). Routes are keyed per
//   replica, so an agent that moves never has one replica's entry overwrite
//   another's; a replica deletes its own with a tombstone when the agent
//   leaves it or the replica stops, and refreshes them every HEARTBEAT_MS so
//   that the routes of a replica that crashed are ignored once STALE_MS old.
//
// Agents are named by name here: agent ids are rowids of each replica's SQLite.

const HEARTBEAT_MS = 30_000;
const STALE_MS = 3 * HEARTBEAT_MS;

interface RouteRow {
  kind: 'ci_tunnel_route';
  v: 1;
  agent: string;
  replica: string;
  /** host:port of the replica's Kubernetes API proxy, reachable from the other replicas. */
  address: string;
  tls: boolean;
  /** When the agent's first call of this stay arrived. */
  since: string;
  /** When this row was written (heartbeat). */
  at: string;
}

interface Route {
  target: ForwardTarget;
  since: number;
  at: number;
}

export interface ReplicaSyncOptions {
  cfg: KafkaConfig;
  db: DB;
  jobs: JobTokens;
  tunnels: AgentTunnels;
  agents: AgentRegistry;
  /** This replica's proxy as the others reach it. */
  address: string;
  tls: boolean;
  log: Logger;
  /** How often local changes (tokens, connected agents) are looked for. */
  intervalMs?: number;
}

export class ReplicaSync {
  readonly replica: string;
  private readonly kafka: KafkaClient;
  private readonly topic: string;
  private producer: Producer | undefined;
  private consumer: Consumer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;
  /** agent name → replica → route, from the topic (this replica's own included). */
  private readonly routes = new Map<string, Map<string, Route>>();
  /** Agents this replica has published a route for, with when (heartbeat) and since when. */
  private readonly mine = new Map<string, { since: string; at: number }>();

  constructor(private readonly o: ReplicaSyncOptions) {
    this.replica = replicaId(o.db);
    this.kafka = createKafkaClient(o.cfg, o.log);
    this.topic = topicsOf(o.cfg).tokens;
  }

  async start(): Promise<void> {
    try {
      this.producer = this.kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
      await this.producer.connect();
      const consumer = this.kafka.consumer({
        // Never committed: every start reads the whole (compacted) topic, since the routes live in memory.
        groupId: `${this.o.cfg.topic_prefix}.ci.${this.replica}`,
        sessionTimeout: this.o.cfg.session_timeout,
        maxWaitTimeInMs: 200,
        allowAutoTopicCreation: false,
      });
      this.consumer = consumer;
      consumer.on(consumer.events.CRASH, (e) => {
        this.o.log.error(
          { error: explainKafkaError(e.payload.error, this.o.cfg, this.topic), restarting: e.payload.restart },
          'CI tunnel: reading the tokens topic failed; job tokens and agents of other replicas may not be known here until it recovers',
        );
      });
      await consumer.connect();
      await consumer.subscribe({ topic: this.topic, fromBeginning: true });
      await consumer.run({ autoCommit: false, eachMessage: async ({ message }) => this.apply(message.key?.toString('utf8') ?? '', message.value) });
    } catch (e) {
      await this.stop();
      throw new Error(`CI tunnel: cannot share job tokens and agent routes over Kafka: ${explainKafkaError(e, this.o.cfg, this.topic)}`);
    }
    await this.sync();
    this.timer = setInterval(() => void this.sync(), this.o.intervalMs ?? 500);
    this.timer.unref();
  }

  /** Replicas other than this one holding calls of the agent now, the one it reached last first. */
  holding(agent: string, now = Date.now()): ForwardTarget[] {
    const byReplica = this.routes.get(agent);
    if (!byReplica) return [];
    return [...byReplica.entries()]
      .filter(([replica, r]) => replica !== this.replica && now - r.at < STALE_MS)
      .sort((a, b) => b[1].since - a[1].since)
      .map(([, r]) => r.target);
  }

  private apply(key: string, value: Buffer | null): void {
    if (key.startsWith('ci_route:')) {
      const [, agent, replica] = key.split(':');
      if (!agent || !replica) return;
      if (!value) {
        this.routes.get(agent)?.delete(replica);
        return;
      }
      const r = parse<RouteRow>(value, this.o.log);
      if (r?.kind !== 'ci_tunnel_route' || typeof r.address !== 'string') return;
      let m = this.routes.get(agent);
      if (!m) this.routes.set(agent, (m = new Map()));
      m.set(replica, { target: { replica, address: r.address, tls: r.tls === true }, since: Date.parse(r.since), at: Date.parse(r.at) });
    } else if (key.startsWith('ci_job:') && value) {
      const r = parse<SharedJobToken & { kind: string }>(value, this.o.log);
      if (r?.kind !== 'ci_job_token' || !/^[0-9a-f]{64}$/.test(r.token_hash) || !Number.isSafeInteger(r.id)) return;
      this.o.jobs.adopt(r);
    }
  }

  /** Publishes what changed here: job tokens (new, revoked, purged) and the agents holding calls to this replica. */
  async sync(): Promise<void> {
    if (this.busy || this.stopped || !this.producer) return;
    this.busy = true;
    try {
      const rows = this.o.jobs.unpublished();
      const forgotten = this.o.jobs.purgedPublished();
      const routes = this.routeChanges();
      const messages: { key: string; value: string | null }[] = [
        ...rows.map((r) => ({ key: `ci_job:${r.token_hash}`, value: JSON.stringify({ kind: 'ci_job_token', ...r }) })),
        ...forgotten.map((h) => ({ key: `ci_job:${h}`, value: null })),
        ...routes.messages,
      ];
      if (messages.length === 0) return;
      await this.producer.send({ topic: this.topic, messages });
      // Only once sent: what failed is found again, tombstones included, on the next round.
      routes.commit();
      this.o.jobs.markPublished(rows, forgotten);
    } catch (e) {
      this.o.log.warn({ error: errText(e) }, 'CI tunnel: could not publish job tokens or agent routes to the other replicas; trying again shortly');
    } finally {
      this.busy = false;
    }
  }

  private routeChanges(now = Date.now()): { messages: { key: string; value: string | null }[]; commit(): void } {
    const connected = new Set<string>();
    for (const id of this.o.tunnels.connectedAgents()) {
      const name = this.o.agents.getById(id)?.name;
      if (name) connected.add(name);
    }
    const out: { key: string; value: string | null }[] = [];
    const set = new Map<string, { since: string; at: number }>();
    const gone: string[] = [];
    for (const agent of connected) {
      const had = this.mine.get(agent);
      if (had && now - had.at < HEARTBEAT_MS) continue;
      const since = had?.since ?? new Date(now).toISOString();
      const row: RouteRow = {
        kind: 'ci_tunnel_route',
        v: 1,
        agent,
        replica: this.replica,
        address: this.o.address,
        tls: this.o.tls,
        since,
        at: new Date(now).toISOString(),
      };
      set.set(agent, { since, at: now });
      out.push({ key: `ci_route:${agent}:${this.replica}`, value: JSON.stringify(row) });
    }
    for (const agent of this.mine.keys()) {
      if (connected.has(agent)) continue;
      gone.push(agent);
      out.push({ key: `ci_route:${agent}:${this.replica}`, value: null });
    }
    return {
      messages: out,
      commit: () => {
        for (const [agent, v] of set) this.mine.set(agent, v);
        for (const agent of gone) this.mine.delete(agent);
      },
    };
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    // The others stop forwarding here at once rather than after STALE_MS.
    const gone = [...this.mine.keys()].map((agent) => ({ key: `ci_route:${agent}:${this.replica}`, value: null }));
    if (gone.length && this.producer) await this.producer.send({ topic: this.topic, messages: gone }).catch(() => undefined);
    await this.consumer?.disconnect().catch(() => undefined);
    await this.producer?.disconnect().catch(() => undefined);
  }
}

function parse<T>(value: Buffer, log: Logger): T | undefined {
  try {
    return JSON.parse(value.toString('utf8')) as T;
  } catch {
    log.error({}, 'CI tunnel: skipped a tokens topic message that is not JSON');
    return undefined;
  }
}

/**
 * The address the other replicas reach this replica's proxy at: the listen
 * address, unless it is a wildcard; then the first non-loopback IPv4 address
 * (the pod IP in Kubernetes).
 */
export function internalAddress(listenAddress: string): string {
  const m = /^(.*):(\d+)$/.exec(listenAddress);
  if (!m) return listenAddress;
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (host && host !== '0.0.0.0' && host !== '::') return listenAddress;
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return `${a.address}:${m[2]}`;
  return `127.0.0.1:${m[2]}`;
}
