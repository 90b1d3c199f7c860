import type { Admin } from 'kafkajs';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AgentRegistry } from '../agents/agent-registry.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import { STATUSES, type AlertStatus, type AlertStore, type StoredAlert } from '../store/alert-store.js';
import type { AlertSink } from '../tunnel/alert-sink.js';
import { createKafkaClient, ensureTopics, explainKafkaError, topicsOf } from './client.js';
import { migrateKafka, replicaId } from './db.js';
import { DeliveryGroup, type DeliveryStepHook, type WebhookEnqueuer } from './delivery.js';
import { KafkaAlertSink } from './log-sink.js';
import { encodeStatusEvent, HEADER_REF, HEADER_TYPE, logKey } from './messages.js';
import { OwnEvents } from './own-events.js';
import { checkRecordedPartitions, PARTITION_CHECK_MS, PartitionWatch } from './partition-watch.js';
import { LogWriter } from './producer.js';
import { Projection, type NotReady } from './projection.js';
import { TokenSync } from './tokens.js';
import { webhooksFor } from '../webhooks/service.js';
import { VerdictError } from '../../shared/errors.js';
import { exposeKafkaMetrics } from './metrics.js';

// A server replica on Kafka: agent batches go to the log (the sink), every
// replica projects the log into its SQLite (which serves the feed), status
// changes go through the log too, one member per log partition hands changes
// to webhooks and the export topic, and token rows, API-made webhook
// integrations and 410 disablements are shared.

export interface KafkaReplicaOptions {
  config: KafkaConfig;
  db: DB;
  store: AlertStore;
  agents: AgentRegistry;
  tokens: FeedTokens;
  /** The webhook outbox; absent: no webhook deliveries from this replica. */
  webhooks?: WebhookEnqueuer | undefined;
  log: Logger;
  /** How long changeStatus waits for this replica to apply its own change. */
  statusTimeoutMs?: number;
  /** Tests only: the projection projects nothing until this resolves. */
  holdProjection?: Promise<void> | undefined;
  /** Tests only: the delivery group hands nothing on until this resolves (to watch it run behind the projection). */
  holdDelivery?: Promise<void> | undefined;
  /** Tests only: told each step of a hand-on that recorded webhook deliveries (`verdict server --test-kill-delivery-at`). */
  onDeliveryStep?: DeliveryStepHook | undefined;
  /** Tests only: how often the log's partition count is looked at, and how old the consumers' metadata may get (PARTITION_CHECK_MS). */
  partitionCheckMs?: number | undefined;
}

export interface KafkaReplica {
  replicaId: string;
  /** For the tunnel: acknowledges agent batches once Kafka has them. */
  sink: AlertSink;
  /**
   * Changes an alert's status through the log, so every replica applies it at
   * the same place among the alert's events; resolves once this replica has
   * applied it, with the alert as it is then. Undefined for an unknown id.
   * Throws VERDICT_CONFLICT like AlertStore.setStatus; VERDICT_KAFKA when
   * Kafka did not take the change (brokers down or restarting: nothing
   * changed, the caller may try again); VERDICT_PENDING when the change is in
   * the log but this replica has not applied it in time.
   */
  changeStatus(id: number, to: AlertStatus, actor: string): Promise<StoredAlert | undefined>;
  /** The replica-independent id of an alert (agent/fingerprint/first event id). */
  uidOf(id: number): string | undefined;
  /** True once this replica has projected the log as it was at start-up. */
  caughtUp(): boolean;
  /** For /readyz: why this replica should get no feed traffic yet (it is joining its consumer groups, rebuilding or catching up); undefined once it may. */
  notReady(): NotReady | undefined;
  /**
   * Resolves once the replica's consumers have joined their groups; rejects
   * with what the brokers refused (a group ACL, say). The sink works before:
   * after a crash the join waits until the brokers drop the dead process's
   * members (kafka.session_timeout), and the server listens meanwhile.
   */
  joined: Promise<void>;
  /** Resolves true once everything in the log now is projected here (tests, tools). */
  waitCaughtUp(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

export async function startKafkaReplica(o: KafkaReplicaOptions): Promise<KafkaReplica> {
  const cfg = o.config;
  const log = o.log;
  migrateKafka(o.db);
  exposeKafkaMetrics();
  const replica = replicaId(o.db);
  const topics = topicsOf(cfg);
  const kafka = createKafkaClient(cfg, log);
  const admin: Admin = kafka.admin({ retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 3_000 } });
  const writer = new LogWriter(kafka, cfg, log);
  const own = new OwnEvents();
  let projection: Projection | undefined;
  let delivery: DeliveryGroup | undefined;
  let tokenSync: TokenSync | undefined;
  let watch: PartitionWatch | undefined;
  let partitions = 0;
  const checkMs = o.partitionCheckMs ?? PARTITION_CHECK_MS;
  let closed = false;
  const stopAll = async () => {
    closed = true;
    watch?.stop();
    await Promise.allSettled([delivery?.stop(), tokenSync?.stop()]);
    await projection?.stop();
    await writer.close();
    await admin.disconnect().catch(() => undefined);
  };
  try {
    try {
      await admin.connect();
    } catch (e) {
      throw new Error(explainKafkaError(e, cfg));
    }
    const ensured = await ensureTopics(admin, cfg, log);
    partitions = ensured.logPartitions;
    checkRecordedPartitions(o.db, cfg, topics.log, partitions, log);
    writer.setPartitions(topics.log, partitions);
    // The export's partitions are picked here too (same murmur2 as the producer's), so its messages spread over the lanes.
    if (topics.export) writer.setPartitions(topics.export, ensured.exportPartitions);
    await writer.start();
    projection = new Projection({
      kafka,
      cfg,
      db: o.db,
      store: o.store,
      topic: topics.log,
      groupId: topics.projectionGroup(replica),
      log,
      claims: o.webhooks,
      hold: o.holdProjection,
      partitions,
      own,
      metadataMaxAge: checkMs,
    });
    await projection.start(admin);
    tokenSync = new TokenSync({
      kafka,
      cfg,
      db: o.db,
      agents: o.agents,
      tokens: o.tokens,
      writer,
      topic: topics.tokens,
      groupId: topics.tokensGroup(replica),
      log,
      // Started before the replica (server.ts), so API-made integrations and 410 disablements reach every replica.
      integrations: webhooksFor(o.store)?.registry,
    });
    tokenSync.shareIntegrations();
    delivery = new DeliveryGroup({
      kafka,
      cfg,
      db: o.db,
      store: o.store,
      projection,
      writer,
      logTopic: topics.log,
      exportTopic: topics.export,
      groupId: topics.deliveryGroup,
      replica,
      webhooks: o.webhooks,
      log,
      hold: o.holdDelivery,
      onStep: o.onDeliveryStep,
      metadataMaxAge: checkMs,
    });
    await delivery.start(admin);
    const proj = projection;
    watch = new PartitionWatch({
      admin,
      db: o.db,
      cfg,
      writer,
      log,
      logTopic: topics.log,
      exportTopic: topics.export,
      logPartitions: partitions,
      exportPartitions: ensured.exportPartitions,
      onLogGrew: (n) => proj.setPartitions(n),
      intervalMs: checkMs,
    });
    watch.start();
  } catch (e) {
    await stopAll();
    throw e;
  }

  const proj = projection;
  const groups = [proj, tokenSync, delivery];
  let isJoined = false;
  const joined = (async () => {
    for (const g of groups) {
      if (closed) throw new Error('Kafka: the replica was closed before its consumers had joined their groups');
      await g.join();
    }
    isJoined = true;
    log.info(
      { replica_id: replica, brokers: cfg.brokers, log_topic: topics.log, partitions, export_topic: topics.export || null },
      'Kafka: this server is a replica on the shared alert log',
    );
  })();
  // Its owner awaits it; a replica closed before anyone did must not leave an unhandled rejection.
  joined.catch(() => undefined);
  const statusTimeout = o.statusTimeoutMs ?? 15_000;

  return {
    replicaId: replica,
    sink: new KafkaAlertSink(writer, topics.log, replica, log, own),
    uidOf: (id) => proj.uidOf(id),
    caughtUp: () => proj.caughtUp(),
    notReady: () =>
      isJoined
        ? proj.notReady()
        : {
            status: 'joining',
            behind: proj.behind() ?? 0,
            reason:
              tokenSync?.joining() ??
              `this replica is joining its Kafka consumer groups, then it catches up with the alert log; after a crash the brokers let it join once they drop the old process's members (kafka.session_timeout, ${Math.round(cfg.session_timeout / 1000)} s)`,
          },
    joined,
    async waitCaughtUp(timeoutMs) {
      const ends = await admin.fetchTopicOffsets(topics.log);
      const waits = ends.map((e) => (Number(e.high) > Number(e.low) ? proj.waitFor(e.partition, Number(e.high) - 1, timeoutMs) : Promise.resolve(true)));
      return (await Promise.all(waits)).every(Boolean);
    },
    async changeStatus(id, to, actor) {
      if (!STATUSES.includes(to)) throw new VerdictError('VERDICT_BAD_REQUEST', `status must be one of ${STATUSES.join(', ')}`);
      const a = o.store.get(id);
      if (!a) return undefined;
      if (a.status === to) return a;
      const uid = proj.uidOf(id);
      // An alert stored before this server used Kafka exists here only.
      if (!uid) return o.store.setStatus(id, to, actor);
      // Refused here already, so the caller hears it; the projection refuses it alike should it race.
      o.store.checkStatusChange(a, to);
      const firstEvent = uid.slice(`${a.agent}/${a.fingerprint}/`.length);
      let at;
      try {
        [at] = await writer.append([
          {
            topic: topics.log,
            key: logKey(a.agent, a.fingerprint),
            value: encodeStatusEvent({
              agent: a.agent,
              fingerprint: a.fingerprint,
              alert: firstEvent,
              status: to,
              actor,
              at: new Date().toISOString(),
              replica,
            }),
            headers: { [HEADER_TYPE]: 'status', [HEADER_REF]: uid },
          },
        ]);
      } catch (e) {
        // Not a 500: nothing changed, and the message says why and what to do.
        throw new VerdictError(
          'VERDICT_KAFKA',
          `the alert log in Kafka is unavailable, so the status is not changed: ${(e as Error).message}; try again once Kafka is back`,
        );
      }
      if (!at || at.offset < 0 || !(await proj.waitFor(at.partition, at.offset, statusTimeout))) {
        throw new VerdictError(
          'VERDICT_PENDING',
          `the status change is in the alert log but this server has not applied it within ${Math.round(statusTimeout / 1000)} s; it shows once this replica catches up (see verdict_kafka_projection_lag_messages)`,
        );
      }
      return o.store.get(id);
    },
    async close() {
      try {
        await stopAll();
      } catch (e) {
        log.warn({ error: errText(e) }, 'Kafka: closing the Kafka clients failed');
      }
    },
  };
}
