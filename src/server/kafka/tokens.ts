import type { Statement } from 'better-sqlite3';
import type { Consumer, Kafka as KafkaClient } from 'kafkajs';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AgentRegistry } from '../agents/agent-registry.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { IntegrationRegistry, IntegrationShare, SharedIntegration, SharedIntegrationState } from '../webhooks/integrations.js';
import { VerdictError } from '../../shared/errors.js';
import { relaunchUntilRunning, runOrThrow } from './relaunch.js';
import { explainKafkaError } from './client.js';
import type { LogWriter } from './producer.js';

// Agent and feed tokens live in each replica's SQLite, but an agent that fails
// over, or a feed client behind a load balancer, must be accepted by every
// replica. Each replica publishes the token rows it has (hashes only, never a
// token) to the compacted <prefix>.tokens topic and adds the rows other
// replicas published. Revocation is one-way, so the replicas converge on
// "revoked" whatever the order. `verdict agents register --data-dir` on any
// one replica's data dir is enough.
// An agent's move to another configuration project is not one-way: it is one
// message per agent (key agent_project:<name>, so compaction keeps the newest),
// applied by every replica, the one that made it too, in log order (one key
// is in one partition), so every replica ends at the change written last. A
// move made here waits (agent_project_changes) until this replica reads it
// back from the topic, not merely until the append returns: until then a move
// read from the topic was written before it, and is overridden by it; after,
// every move read was written after it, and is applied.
// Webhook integrations made through the admin API go the same way: one
// message per integration name (key integration:<name>) holding its spec, or
// that it was deleted, applied by every replica in log order; it holds the
// integration's URL, secrets and key as given to the API: every replica needs
// them to deliver. Every integration's 410 disablement and its enable are
// another message (key integration_state:<name>) that holds only for the
// endpoint it was decided on, so it never undoes a spec change or a deletion.
// An API change waits until this replica reads it back and applied it; a
// disablement is applied here at once (the endpoint is gone) and written for
// the others, unless a change of that integration is read before Kafka took it.

export interface AgentTokenRow {
  kind: 'agent_token';
  agent: string;
  config_project: string;
  agent_created_at: string;
  name: string;
  token_hash: string;
  created_at: string;
  revoked_at: string | null;
}

export interface FeedTokenRow {
  kind: 'feed_token';
  name: string;
  scope: string;
  token_hash: string;
  created_at: string;
  revoked_at: string | null;
}

/** An agent's configuration project as last set (API or CLI) on the replica that wrote it. */
export interface AgentProjectRow {
  kind: 'agent_project';
  agent: string;
  config_project: string;
  /** For a replica that has not seen the agent's token rows yet, which the agent row would otherwise come from. */
  agent_created_at: string;
  changed_at: string;
}

export type TokenRow = AgentTokenRow | FeedTokenRow | AgentProjectRow | SharedIntegration | SharedIntegrationState;

/** One move, as written: what tells this replica's own message, read back, from other moves of the agent. */
const moveOf = (r: { agent: string; config_project: string; changed_at: string }) => JSON.stringify([r.agent, r.config_project, r.changed_at]);

const keyOf = (r: TokenRow) =>
  r.kind === 'integration' || r.kind === 'integration_state'
    ? `${r.kind}:${r.name}`
    : r.kind === 'agent_project'
      ? `agent_project:${r.agent}`
      : `${r.kind === 'agent_token' ? 'agent' : 'feed'}:${r.token_hash}`;

/** How long an admin API change of an integration waits for this replica to read it back. */
const INTEGRATION_WAIT_MS = 15_000;

export interface TokenSyncOptions {
  kafka: KafkaClient;
  cfg: KafkaConfig;
  db: DB;
  agents: AgentRegistry;
  tokens: FeedTokens;
  writer: LogWriter;
  topic: string;
  groupId: string;
  log: Logger;
  /** The webhook integrations to share; absent: none are. */
  integrations?: IntegrationRegistry | undefined;
  /** How often local tables are looked at for new or revoked tokens. */
  intervalMs?: number;
}

export class TokenSync implements IntegrationShare {
  private consumer: Consumer | undefined;
  private timer: NodeJS.Timeout | undefined;
  private publishing = false;
  /**
   * Moves made here that are in the log, or on their way there, and not read back yet: not sent again. A failed
   * append takes its moves out, so they are sent again. At start it holds the moves found waiting, which the last run
   * may have appended without reading them back: they are sent only if the reader, once it has reached what the
   * topic held at start, has not found them there (sent after a newer move, they would undo it).
   */
  private readonly inFlight = new Set<string>();
  /** Per partition, the topic's end at start while the reader has not reached it. */
  private behind = new Map<number, number>();
  /** Messages behind when join() started reading, while it reads (see joining()). */
  private catchingUp: number | undefined;
  private heldAtStart: string[] = [];
  private readonly abort = new AbortController();
  private get stopped(): boolean {
    return this.abort.signal.aborted;
  }
  private readonly s: Record<string, Statement<unknown[]>>;
  /** Integration changes made here, waiting to be read back, by `change`; told whether it was applied. */
  private readonly integrationWaiters = new Map<string, (applied: boolean) => void>();
  /**
   * Disablements made here that Kafka has not taken yet, in order; sent again with the next publish. Dropped when a
   * change of that integration is read first: made after it (an enable, a new endpoint), it must not be undone.
   * Repairs (see IntegrationRegistry.repairFor) stay: they never undo a change, and are checked again when read back.
   */
  private integrationQueue: (SharedIntegration | SharedIntegrationState)[] = [];
  /** `change` of the integration messages written here and not read back yet: read back, each is checked for repair. */
  private readonly ownChanges = new Set<string>();
  /** Names a change was read for while an append was under way: a disablement it carried and failed is not sent again. */
  private readonly readWhileSending = new Set<string>();
  /**
   * Per integration name, the state written here and not read back yet: a state read before it was written before
   * it, and is not applied (it would re-enable the integration here for a moment, and more 410s follow).
   */
  private readonly stateInFlight = new Map<string, string>();
  /** Resolved once the reader reached the topic's end as it was at start. */
  private caughtUp: (() => void) | undefined;

  constructor(private readonly o: TokenSyncOptions) {
    const db = o.db;
    this.s = {
      unpublishedAgent: db.prepare(`SELECT a.name AS agent, a.config_project, a.created_at AS agent_created_at, t.name, t.token_hash, t.created_at, t.revoked_at
        FROM agent_tokens t JOIN agents a ON a.id = t.agent_id LEFT JOIN kafka_tokens_seen s ON s.key = 'agent:' || t.token_hash
        WHERE s.key IS NULL OR (t.revoked_at IS NOT NULL AND s.revoked = 0)`),
      unpublishedFeed: db.prepare(`SELECT t.name, t.scope, t.token_hash, t.created_at, t.revoked_at
        FROM feed_tokens t LEFT JOIN kafka_tokens_seen s ON s.key = 'feed:' || t.token_hash
        WHERE s.key IS NULL OR (t.revoked_at IS NOT NULL AND s.revoked = 0)`),
      markSeen: db.prepare(
        'INSERT INTO kafka_tokens_seen (key, revoked) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET revoked = max(revoked, excluded.revoked)',
      ),
      insertAgent: db.prepare('INSERT INTO agents (name, config_project, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING'),
      agentId: db.prepare('SELECT id FROM agents WHERE name = ?'),
      insertAgentToken: db.prepare('INSERT INTO agent_tokens (agent_id, name, token_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING'),
      agentToken: db.prepare('SELECT t.id, t.revoked_at, a.name AS agent FROM agent_tokens t JOIN agents a ON a.id = t.agent_id WHERE t.token_hash = ?'),
      insertFeedToken: db.prepare('INSERT INTO feed_tokens (name, scope, token_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (token_hash) DO NOTHING'),
      feedToken: db.prepare('SELECT id, revoked_at FROM feed_tokens WHERE token_hash = ?'),
      // Written by the registry (setConfigProject) in the same transaction as the change.
      unpublishedProjects: db.prepare(`SELECT c.agent, c.config_project, a.created_at AS agent_created_at, c.changed_at
        FROM agent_project_changes c JOIN agents a ON a.name = c.agent`),
      moveReadBack: db.prepare('DELETE FROM agent_project_changes WHERE agent = ? AND config_project = ? AND changed_at = ?'),
      projectWaiting: db.prepare('SELECT config_project, changed_at FROM agent_project_changes WHERE agent = ?'),
    };
  }

  /** Shares the registry's changes through the topic from now on. */
  shareIntegrations(): void {
    this.o.integrations?.setShare(this);
  }

  /** Without a row: publishes token changes (as the timer does). With one: an integration change, see IntegrationShare. */
  async publish(row?: SharedIntegration | SharedIntegrationState, wait = false): Promise<boolean> {
    if (!row) {
      await this.publishTokens();
      return true;
    }
    this.ownChanges.add(row.change);
    if (!wait && row.kind === 'integration_state') {
      this.integrationQueue.push(row);
      await this.publishTokens();
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const applied = new Promise<boolean | undefined>((resolve) => {
      this.integrationWaiters.set(row.change, resolve);
      timer = setTimeout(() => resolve(undefined), INTEGRATION_WAIT_MS);
    });
    try {
      try {
        // Before the append: the reader may read it back before the append returns.
        if (row.kind === 'integration_state') this.stateInFlight.set(row.name, row.change);
        await this.o.writer.append([{ topic: this.o.topic, key: keyOf(row), value: JSON.stringify(row) }]);
      } catch (e) {
        this.notInFlight(row);
        this.ownChanges.delete(row.change);
        throw new VerdictError(
          'VERDICT_KAFKA',
          `Kafka is unavailable, so the integration is not changed on any replica: ${errText(e)}; try again once Kafka is back`,
        );
      }
      const result = await applied;
      if (result === undefined)
        throw new VerdictError(
          'VERDICT_PENDING',
          `the integration change is in Kafka but this replica has not read it back within ${INTEGRATION_WAIT_MS / 1000} s; it shows once this replica catches up with the ${this.o.topic} topic`,
        );
      return result;
    } finally {
      clearTimeout(timer);
      this.integrationWaiters.delete(row.change);
    }
  }

  /**
   * Joins this replica's tokens group and reads the topic up to its end as it was at start, then publishes what the
   * topic lacks. Only then may this replica deliver webhooks: an alert for an integration not read yet would be
   * skipped, and its log offset committed.
   */
  async join(): Promise<void> {
    this.heldAtStart = (this.s.unpublishedProjects!.all() as Omit<AgentProjectRow, 'kind'>[]).map(moveOf);
    for (const m of this.heldAtStart) this.inFlight.add(m);
    try {
      const { ends, count } = await this.unread();
      this.behind = ends;
      if (count > 0) {
        this.catchingUp = count;
        this.o.log.info({ topic: this.o.topic, behind: count }, `Kafka: reading the tokens topic to its end (${count} behind)`);
      }
      const caughtUp = new Promise<void>((resolve) => {
        this.caughtUp = resolve;
      });
      if (!this.behind.size) this.caughtUp?.();
      this.releaseIfCaughtUp();
      await this.launch();
      await Promise.race([caughtUp, new Promise<void>((resolve) => this.abort.signal.addEventListener('abort', () => resolve(), { once: true }))]);
    } catch (e) {
      throw new Error(explainKafkaError(e, this.o.cfg, this.o.topic));
    } finally {
      this.catchingUp = undefined;
    }
    // stop() ran while this waited: no timer may outlive it.
    if (this.stopped) return;
    // Published once now so that tokens registered before the start count right away.
    await this.publishTokens();
    this.timer = setInterval(() => void this.publishTokens(), this.o.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Why this replica is not ready yet, while join() reads the tokens topic to its end. */
  joining(): string | undefined {
    return this.catchingUp === undefined
      ? undefined
      : `this replica is reading the ${this.o.topic} topic (agent and feed tokens, webhook integrations) to its end (${this.catchingUp} messages behind at start) before it joins the delivery group`;
  }

  /** The partitions whose end, now, is past what this replica's group has read, and how many messages that is. */
  private async unread(): Promise<{ ends: Map<number, number>; count: number }> {
    const admin = this.o.kafka.admin();
    await admin.connect();
    try {
      const [ends, groups] = await Promise.all([
        admin.fetchTopicOffsets(this.o.topic),
        admin.fetchOffsets({ groupId: this.o.groupId, topics: [this.o.topic] }),
      ]);
      const committed = new Map(groups.flatMap((g) => g.partitions).map((p) => [p.partition, Number(p.offset)]));
      const behind = new Map<number, number>();
      let count = 0;
      for (const e of ends) {
        // No committed offset (-1), or one compaction went past: the reader starts at the topic's start.
        const from = Math.max(committed.get(e.partition) ?? -1, Number(e.low));
        if (Number(e.high) > from) behind.set(e.partition, Number(e.high));
        count += Math.max(0, Number(e.high) - from);
      }
      return { ends: behind, count };
    } finally {
      await admin.disconnect();
    }
  }

  private read(partition: number, offset: string): void {
    const end = this.behind.get(partition);
    if (end === undefined || Number(offset) + 1 < end) return;
    this.behind.delete(partition);
    if (!this.behind.size) this.caughtUp?.();
    if (this.releaseIfCaughtUp()) void this.publishTokens();
  }

  /** True if it let the moves held at start be sent. */
  private releaseIfCaughtUp(): boolean {
    if (this.behind.size || !this.heldAtStart.length) return false;
    // Those still waiting were not in the log: each would have been read back, and cleared.
    for (const m of this.heldAtStart) this.inFlight.delete(m);
    this.heldAtStart = [];
    return true;
  }

  private async launch(): Promise<void> {
    const consumer = this.o.kafka.consumer({
      groupId: this.o.groupId,
      sessionTimeout: this.o.cfg.session_timeout,
      maxWaitTimeInMs: 500,
      allowAutoTopicCreation: false,
      // A consumer stopped while it joins fails its join; kafkajs would restart it after stop().
      retry: { retries: 5, restartOnFailure: async () => !this.stopped },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.CRASH, (e) => {
      // Stopping disconnects it, which fails a join or fetch under way: not a failure to report.
      if (this.stopped) return;
      this.o.log.error(
        { error: explainKafkaError(e.payload.error, this.o.cfg, this.o.topic), restarting: e.payload.restart },
        'Kafka: reading the tokens topic failed; tokens created on other replicas may not work here until it recovers',
      );
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.o.topic, fromBeginning: true });
    await runOrThrow(
      consumer,
      () =>
        consumer.run({
          eachMessage: async ({ partition, message }) => {
            this.apply(message.value);
            this.read(partition, message.offset);
          },
        }),
      () => {
        if (!this.stopped && this.consumer === consumer) void this.restartLater();
      },
    );
  }

  private restartLater(): Promise<void> {
    return relaunchUntilRunning({
      what: 'the tokens topic reader',
      log: this.o.log,
      signal: this.abort.signal,
      disconnect: async () => {
        await this.consumer?.disconnect();
      },
      launch: () => this.launch(),
      explain: (e) => explainKafkaError(e, this.o.cfg, this.o.topic),
    });
  }

  /** Publishes local token rows that the topic does not have yet (new, or newly revoked), and agents moved here. */
  async publishTokens(): Promise<void> {
    if (this.publishing || this.stopped) return;
    this.publishing = true;
    try {
      const moves = (this.s.unpublishedProjects!.all() as Omit<AgentProjectRow, 'kind'>[])
        .filter((r) => !this.inFlight.has(moveOf(r)))
        .map((r) => ({ kind: 'agent_project' as const, ...r }));
      const tokens = [
        ...(this.s.unpublishedAgent!.all() as Omit<AgentTokenRow, 'kind'>[]).map((r) => ({ kind: 'agent_token' as const, ...r })),
        ...(this.s.unpublishedFeed!.all() as Omit<FeedTokenRow, 'kind'>[]).map((r) => ({ kind: 'feed_token' as const, ...r })),
      ];
      const integrations = this.integrationQueue;
      this.integrationQueue = [];
      const rows: TokenRow[] = [...tokens, ...moves, ...integrations];
      if (!rows.length) return;
      for (const m of moves) this.inFlight.add(moveOf(m));
      for (const r of integrations) if (r.kind === 'integration_state') this.stateInFlight.set(r.name, r.change);
      this.readWhileSending.clear();
      try {
        await this.o.writer.append(rows.map((r) => ({ topic: this.o.topic, key: keyOf(r), value: JSON.stringify(r) })));
      } catch (e) {
        for (const m of moves) this.inFlight.delete(moveOf(m));
        for (const r of integrations) this.notInFlight(r);
        // As in applyIntegration: a change read meanwhile was made after the disablement, which must not undo it.
        const again = integrations.filter((r) => r.repair === true || !this.readWhileSending.has(r.name));
        for (const r of integrations) if (!again.includes(r)) this.ownChanges.delete(r.change);
        this.integrationQueue = [...again, ...this.integrationQueue];
        throw e;
      }
      // Moves stay waiting until read back (applyProject).
      this.o.db.transaction(() => {
        for (const r of tokens) this.s.markSeen!.run(keyOf(r), r.revoked_at ? 1 : 0);
      })();
      this.o.log.info(
        { tokens: tokens.length, agent_moves: moves.length, integration_states: integrations.length },
        'Kafka: published token changes for the other replicas',
      );
    } catch (e) {
      this.o.log.warn({ error: errText(e) }, 'Kafka: could not publish token changes; trying again shortly');
    } finally {
      this.publishing = false;
    }
  }

  private apply(value: Buffer | null): void {
    if (!value) return; // a tombstone: nothing to add, and revocations are never undone
    let r: TokenRow;
    try {
      r = JSON.parse(value.toString('utf8')) as TokenRow;
    } catch {
      this.o.log.error({}, 'Kafka: skipped a tokens topic message that is not JSON');
      return;
    }
    if (r.kind === 'agent_project') return this.applyProject(r);
    if (r.kind === 'integration' || r.kind === 'integration_state') return this.applyIntegration(r);
    if (typeof r.token_hash !== 'string' || !/^[0-9a-f]{64}$/.test(r.token_hash)) return;
    this.o.db.transaction(() => {
      if (r.kind === 'agent_token') {
        this.s.insertAgent!.run(r.agent, r.config_project, r.agent_created_at);
        const agent = this.s.agentId!.get(r.agent) as { id: number };
        this.s.insertAgentToken!.run(agent.id, r.name, r.token_hash, r.created_at);
        const local = this.s.agentToken!.get(r.token_hash) as { id: number; revoked_at: string | null; agent: string };
        // Through the registry, so the revocation watcher drops this token's open streams.
        if (r.revoked_at && !local.revoked_at) this.o.agents.revokeToken(local.agent, local.id);
      } else if (r.kind === 'feed_token') {
        this.s.insertFeedToken!.run(r.name, r.scope, r.token_hash, r.created_at);
        const local = this.s.feedToken!.get(r.token_hash) as { id: number; revoked_at: string | null };
        if (r.revoked_at && !local.revoked_at) this.o.tokens.revoke(local.id);
      } else {
        return;
      }
      this.s.markSeen!.run(keyOf(r), r.revoked_at ? 1 : 0);
    })();
  }

  private notInFlight(r: SharedIntegration | SharedIntegrationState): void {
    if (this.stateInFlight.get(r.name) === r.change) this.stateInFlight.delete(r.name);
  }

  private applyIntegration(r: SharedIntegration | SharedIntegrationState): void {
    if (typeof r.name !== 'string') return;
    if (this.publishing) this.readWhileSending.add(r.name);
    // A disablement not written yet was made before this change: the change wins.
    this.integrationQueue = this.integrationQueue.filter((q) => {
      const keep = q.repair === true || q.name !== r.name;
      if (!keep) this.ownChanges.delete(q.change);
      return keep;
    });
    let applied = false;
    const mine = this.stateInFlight.get(r.name);
    if (r.kind === 'integration_state' && mine !== undefined && mine !== r.change) {
      // Written before the state written here, which is on its way: that one is what every replica ends at.
    } else {
      if (mine === r.change) this.stateInFlight.delete(r.name);
      try {
        applied = (r.kind === 'integration' ? this.o.integrations?.applyShared(r, this.o.log) : this.o.integrations?.applyState(r)) ?? false;
      } catch (e) {
        // Skipped, not retried: the reader must go on to the messages after it.
        this.o.log.error({ integration: r.name, error: errText(e) }, 'Kafka: could not apply a webhook integration change from the tokens topic');
      }
    }
    if (typeof r.change === 'string') this.integrationWaiters.get(r.change)?.(applied);
    if (typeof r.change === 'string' && this.ownChanges.delete(r.change)) this.repair(r);
  }

  /**
   * Compaction keeps only the last message of each key, so it must be what every replica has: when this replica's own
   * change was not applied (or was overtaken), the current state is written after it.
   */
  private repair(r: SharedIntegration | SharedIntegrationState): void {
    let fix: SharedIntegration | SharedIntegrationState | undefined;
    try {
      fix = this.o.integrations?.repairFor(r);
    } catch (e) {
      this.o.log.error({ integration: r.name, error: errText(e) }, 'Kafka: could not check a webhook integration change read back from the tokens topic');
    }
    if (!fix) return;
    this.o.log.info(
      { integration: r.name, kind: r.kind },
      "Kafka: a webhook integration change made here was not applied; writing the integration's current state after it, so the tokens topic ends at what every replica has",
    );
    this.ownChanges.add(fix.change);
    this.integrationQueue.push(fix);
    void this.publishTokens();
  }

  /**
   * An agent moved on some replica. Through the registry, so the revocation watcher ends the agent's configuration
   * streams of the old project here. While a move made here waits, a move read is one written before it (or it is
   * not in the log yet, and will be written after): it is left, as the waiting move wins everywhere; but a move held
   * since before a crash loses to one made later elsewhere. The waiting
   * move itself, read back, is already in place here: it stops waiting, and every move read after it is applied.
   */
  private applyProject(r: AgentProjectRow): void {
    if (typeof r.agent !== 'string' || typeof r.config_project !== 'string' || typeof r.agent_created_at !== 'string') return;
    if (typeof r.changed_at === 'string') this.inFlight.delete(moveOf(r));
    const from = this.o.db.transaction(() => {
      const waiting = this.s.projectWaiting!.get(r.agent) as { config_project: string; changed_at: string } | undefined;
      if (waiting) {
        if (waiting.config_project === r.config_project && waiting.changed_at === r.changed_at) {
          this.s.moveReadBack!.run(r.agent, r.config_project, r.changed_at);
          return undefined;
        }
        // Held since before a crash: a move read while catching up may have been made elsewhere after it (its own
        // record compacted away, or never written). Made later, it wins, and the held one is dropped, not sent after it.
        const held = moveOf({ agent: r.agent, ...waiting });
        if (!this.heldAtStart.includes(held) || typeof r.changed_at !== 'string' || r.changed_at <= waiting.changed_at) return undefined;
        this.s.moveReadBack!.run(r.agent, waiting.config_project, waiting.changed_at);
        this.heldAtStart = this.heldAtStart.filter((m) => m !== held);
        this.inFlight.delete(held);
      }
      this.s.insertAgent!.run(r.agent, r.config_project, r.agent_created_at);
      return this.o.agents.setConfigProject(r.agent, r.config_project, { publish: false }).from;
    })();
    if (from !== undefined && from !== r.config_project)
      this.o.log.info(
        { agent_name: r.agent, from, to: r.config_project, changed_at: r.changed_at },
        'Agents: changed the configuration project, as another replica did',
      );
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.o.integrations?.setShare(undefined);
    clearInterval(this.timer);
    await this.consumer?.disconnect().catch(() => undefined);
  }
}
