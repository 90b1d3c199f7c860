// Before kafkajs loads: it keeps the CRC function it finds then.
import './kafkajs-tuning.js';
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import kafkajs from 'kafkajs';
import type { Admin, ITopicConfig, Kafka as KafkaClient, KafkaConfig as KafkaJsConfig, logCreator, SASLOptions } from 'kafkajs';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { formatDuration, resolveSecretRef } from '../../shared/config/webhooks-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';

const { Kafka, logLevel, ConfigResourceTypes } = kafkajs;

export interface Topics {
  log: string;
  tokens: string;
  /** '' when the export is off. */
  export: string;
  deliveryGroup: string;
  projectionGroup(replica: string): string;
  tokensGroup(replica: string): string;
}

export function topicsOf(cfg: KafkaConfig): Topics {
  const p = cfg.topic_prefix;
  return {
    log: `${p}.log`,
    tokens: `${p}.tokens`,
    export: cfg.export_topic,
    deliveryGroup: `${p}.delivery`,
    projectionGroup: (r) => `${p}.projection.${r}`,
    tokensGroup: (r) => `${p}.tokens.${r}`,
  };
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read kafka.tls.${what} ${file}: ${(e as Error).message}; mount the file or fix the path`);
  }
}

// kafkajs logs every retried request at ERROR, which during a broker restart is
// a flood; each distinct message is passed on at most once a minute, as a
// warning, and Verdict logs what the operator has to act on itself.
// Retried by kafkajs and normal while groups form or a broker restarts; the
// producer's bounded retries are deliberate (see LogWriter).
const BENIGN =
  /coordinator is loading|coordinator is not available|not the correct coordinator|rebalanc|Limiting retries for the idempotent producer|leadership election|NOT_LEADER|not the leader/i;

function kafkaLogCreator(log: Logger): logCreator {
  const last = new Map<string, number>();
  return () =>
    ({ level, log: entry }) => {
      const { message, ...rest } = entry;
      const fields: Record<string, unknown> = { kafka_logger: rest.logger ?? 'kafkajs' };
      for (const k of ['broker', 'groupId', 'topic', 'error'] as const) if (rest[k] !== undefined) fields[`kafka_${k}`] = rest[k];
      if (level <= logLevel.WARN && !BENIGN.test(`${message} ${String(rest.error ?? '')}`)) {
        const key = `${message}|${String(rest.error ?? '')}`;
        const now = Date.now();
        if (now - (last.get(key) ?? 0) < 60_000) return;
        if (last.size > 200) last.clear();
        last.set(key, now);
        log.warn(fields, `Kafka client: ${message}`);
      } else if (process.env.VERDICT_KAFKA_DEBUG) {
        log.info(fields, `Kafka client: ${message}`);
      }
    };
}

export function createKafkaClient(cfg: KafkaConfig, log: Logger): KafkaClient {
  let ssl: boolean | ConnectionOptions = false;
  if (cfg.tls?.enabled) {
    const t = cfg.tls;
    const o: ConnectionOptions = { rejectUnauthorized: !t.insecure_skip_verify };
    if (t.ca_file) o.ca = [readPem(t.ca_file, 'ca_file')];
    if (t.cert_file && t.key_file) {
      o.cert = readPem(t.cert_file, 'cert_file');
      o.key = readPem(t.key_file, 'key_file');
    }
    if (t.server_name) o.servername = t.server_name;
    ssl = o;
  }
  let sasl: SASLOptions | undefined;
  if (cfg.sasl) {
    const password = resolveSecretRef(cfg.sasl.password);
    sasl = { mechanism: cfg.sasl.mechanism, username: cfg.sasl.username, password } as SASLOptions;
  }
  const opts: KafkaJsConfig = {
    clientId: cfg.client_id,
    brokers: cfg.brokers,
    ssl,
    connectionTimeout: cfg.connection_timeout,
    requestTimeout: cfg.request_timeout,
    // Bounded: a produce that cannot get through fails the agent's batch, which
    // the agent keeps and sends again; retrying here for minutes would only hold
    // the batch hostage.
    retry: { retries: 5, initialRetryTime: 200, maxRetryTime: 3_000 },
    logLevel: process.env.VERDICT_KAFKA_DEBUG ? logLevel.DEBUG : logLevel.WARN,
    logCreator: kafkaLogCreator(log),
  };
  if (sasl) opts.sasl = sasl;
  return new Kafka(opts);
}

/**
 * The innermost error kafkajs wrapped (retries exceeded wraps the last
 * attempt's error; topic creation reports one error per topic in an
 * aggregate, whose own message, "Topic creation errors", says nothing).
 */
function rootCause(e: unknown): unknown {
  let cur = e;
  for (let i = 0; i < 5; i++) {
    const c = cur as { cause?: unknown; originalError?: unknown; errors?: unknown } | undefined;
    let next = c?.cause ?? c?.originalError;
    if (!next && Array.isArray(c?.errors) && c.errors.length) {
      const errs = c.errors as { type?: string }[];
      next = errs.find((x) => x?.type !== 'TOPIC_ALREADY_EXISTS') ?? errs[0];
    }
    if (!next || next === cur) break;
    cur = next;
  }
  return cur;
}

/**
 * The hint for brokers from a flag (the demo's --kafka) that refused a
 * connection setting the flag cannot give, since it gives only the brokers:
 * what the flag does instead, brokers that take that, or a server with a
 * config file; never a key the reader has no file to set.
 */
function flagGoesWithout(flag: string, key: 'sasl' | 'tls', does: string, brokersThatTakeIt: string): string {
  return `${flag} ${does}: give ${brokersThatTakeIt}, or run a server with a config file that sets kafka.${key}`;
}

/**
 * Error text for an operator: what failed and what to do. kafkajs messages
 * alone ("Connection error: connect ECONNREFUSED") do not say which setting
 * to look at.
 */
export function explainKafkaError(e: unknown, cfg: KafkaConfig, topic?: string): string {
  const root = rootCause(e);
  const name = (root as { name?: string })?.name ?? '';
  const type = (root as { type?: string })?.type ?? (e as { type?: string })?.type ?? '';
  const msg = errText(root);
  const brokers = cfg.brokers.join(',');
  // Undefined for a config file, whose keys the hints name.
  const flag = cfg.from_flag;
  if (name === 'KafkaJSSASLAuthenticationError' || type === 'SASL_AUTHENTICATION_FAILED' || /SASL/i.test(msg)) {
    return `Kafka refused the SASL login (mechanism ${cfg.sasl?.mechanism ?? 'none'}, user ${cfg.sasl?.username ?? '-'}): ${msg}; ${
      flag
        ? flagGoesWithout(flag, 'sasl', 'logs in to no broker', 'brokers that take clients without SASL')
        : 'check kafka.sasl.username and kafka.sasl.password, and that the brokers enable this mechanism'
    }`;
  }
  if (
    type === 'TOPIC_AUTHORIZATION_FAILED' ||
    type === 'CLUSTER_AUTHORIZATION_FAILED' ||
    type === 'GROUP_AUTHORIZATION_FAILED' ||
    type === 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED'
  ) {
    const what =
      type === 'GROUP_AUTHORIZATION_FAILED'
        ? `consumer groups ${cfg.topic_prefix}.*`
        : type === 'CLUSTER_AUTHORIZATION_FAILED'
          ? 'the cluster (CREATE for topics, IDEMPOTENT_WRITE for the producer)'
          : `topic ${topic ?? `${cfg.topic_prefix}.*`}`;
    return `Kafka user ${cfg.sasl?.username ?? '(anonymous)'} is not allowed to use ${what}: ${msg}; grant READ, WRITE, DESCRIBE and DESCRIBE_CONFIGS on topics ${cfg.topic_prefix}.*${cfg.export_topic ? ` and ${cfg.export_topic}` : ''}, READ on groups ${cfg.topic_prefix}.*, and IDEMPOTENT_WRITE on the cluster`;
  }
  if (type === 'UNKNOWN_TOPIC_OR_PARTITION') {
    return `Kafka topic ${topic ?? `${cfg.topic_prefix}.log`} does not exist: ${msg}; ${
      flag ? 'grant CREATE on the cluster so that Verdict creates it' : 'set kafka.create_topics: true (needs CREATE on the cluster)'
    } or create it as docs/kafka.md describes`;
  }
  if (type === 'MESSAGE_TOO_LARGE' || type === 'RECORD_LIST_TOO_LARGE') {
    return `Kafka refused messages for ${topic ?? 'the topic'} as too large (${msg}); Verdict keeps a partition's share of a request under 900 KiB, so the topic's max.message.bytes (or the brokers' message.max.bytes) is set below that: raise it to at least 1048588, Kafka's default`;
  }
  if (type === 'INVALID_SESSION_TIMEOUT') {
    const range = "the brokers' group.min.session.timeout.ms and group.max.session.timeout.ms (6s to 30m by default)";
    return flag
      ? `Kafka refused the consumer session timeout of ${cfg.session_timeout / 1000}s (${msg}); widen ${range} to allow it`
      : `Kafka refused kafka.session_timeout ${cfg.session_timeout / 1000}s (${msg}); set it within ${range}`;
  }
  if (type === 'INVALID_REPLICATION_FACTOR') {
    return flag
      ? `Kafka cannot create ${topic ?? 'the topics'} with the brokers' default.replication.factor (${msg}); it is more than the brokers there are: lower default.replication.factor on the brokers, or create the topics as docs/kafka.md describes`
      : `Kafka cannot create ${topic ?? 'the topics'} with kafka.replication_factor ${cfg.replication_factor ?? "(the brokers' default)"} (${msg}); it is more than the brokers there are: lower kafka.replication_factor, or leave it out to use the brokers' default.replication.factor`;
  }
  if (/certificate|self[- ]signed|SSL|TLS|EPROTO|wrong version number/i.test(msg)) {
    return `TLS with the Kafka brokers ${brokers} failed: ${msg}; ${
      flag
        ? flagGoesWithout(flag, 'tls', 'connects without TLS', 'a broker listener that takes plain connections')
        : 'check kafka.tls (ca_file, server_name) and whether the listener expects TLS at all'
    }`;
  }
  if (
    name === 'KafkaJSConnectionError' ||
    name === 'KafkaJSConnectionClosedError' ||
    name === 'KafkaJSBrokerNotFound' ||
    name === 'KafkaJSNoBrokerAvailableError' ||
    /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|Connection timeout|Closed connection|Broker not connected/i.test(msg)
  ) {
    // A port that takes the connection but closes it at the first Kafka request, or never answers it (kafkajs
    // then gives up with "Broker not connected"), is another service's, or a TLS listener.
    const closed = name === 'KafkaJSConnectionClosedError' || /Closed connection/i.test(msg);
    const notKafka =
      closed || /Broker not connected/i.test(msg)
        ? `; ${brokers} took the connection but ${closed ? 'closed it on' : 'did not answer'} the first Kafka request, so it may not be a Kafka broker: check the port is a broker listener${
            flag ? '' : ' (one that expects TLS needs kafka.tls)'
          }`
        : '';
    return `cannot reach the Kafka brokers ${brokers}: ${msg}; check ${flag ? `${flag} ${brokers}` : 'kafka.brokers'} and that the brokers run and are reachable from this server${notKafka}`;
  }
  if (name === 'KafkaJSRequestTimeoutError' || type === 'REQUEST_TIMED_OUT' || /timed? ?out/i.test(msg)) {
    return `Kafka did not answer in time (${msg}); the brokers ${brokers} may be overloaded or restarting`;
  }
  if (type === 'NOT_ENOUGH_REPLICAS' || type === 'NOT_ENOUGH_REPLICAS_AFTER_APPEND') {
    return `Kafka has too few in-sync replicas for ${topic ?? 'the topic'} (${msg}); bring the brokers back or lower min.insync.replicas`;
  }
  return `Kafka: ${msg}`;
}

/**
 * Runs a start-up request again while Kafka says "not yet" (a topic another
 * replica just created has no leader yet, a coordinator is loading).
 */
export async function retrying<T>(fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const start = Date.now();
  for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await fn();
    } catch (e) {
      const root = rootCause(e) as { retriable?: boolean; type?: string };
      const retriable =
        root?.retriable === true ||
        (e as { retriable?: boolean })?.retriable === true ||
        /LEADER|UNKNOWN_TOPIC_OR_PARTITION|COORDINATOR|REBALANCE/.test(root?.type ?? '');
      if (!retriable || Date.now() - start + delay > timeoutMs) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

interface TopicSpec {
  topic: string;
  numPartitions: number;
  configEntries: { name: string; value: string }[];
  what: string;
}

/**
 * Creates the topics Verdict needs, or checks that they exist when it may not
 * create them. A topic that exists is not changed (partitions, retention):
 * operators may have tuned it; checkTopicSettings says what is wrong with it.
 */
export async function ensureTopics(admin: Admin, cfg: KafkaConfig, log: Logger): Promise<{ logPartitions: number; exportPartitions: number }> {
  const t = topicsOf(cfg);
  const specs: TopicSpec[] = [
    // The log is the source of truth replicas rebuild from; compaction would keep
    // one event per alert and lose counts, so retention is by time, by default never.
    {
      topic: t.log,
      numPartitions: cfg.partitions,
      configEntries: [
        { name: 'retention.ms', value: String(cfg.log_retention) },
        { name: 'cleanup.policy', value: 'delete' },
      ],
      what: 'alert log',
    },
    // Latest row per token: compaction keeps it small and complete.
    { topic: t.tokens, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }], what: 'agent and feed tokens' },
  ];
  if (t.export) specs.push({ topic: t.export, numPartitions: cfg.partitions, configEntries: [], what: 'alert export' });
  let existing: string[];
  try {
    existing = await admin.listTopics();
  } catch (e) {
    throw new Error(explainKafkaError(e, cfg));
  }
  const missing = specs.filter((s) => !existing.includes(s.topic));
  if (missing.length) {
    if (!cfg.create_topics) {
      throw new Error(
        `Kafka topics ${missing.map((s) => s.topic).join(', ')} do not exist and kafka.create_topics is false; create them (${missing.map(describeSpec).join('; ')}) or set kafka.create_topics: true`,
      );
    }
    const topics: ITopicConfig[] = missing.map((s) => ({
      topic: s.topic,
      numPartitions: s.numPartitions,
      configEntries: s.configEntries,
      ...(cfg.replication_factor ? { replicationFactor: cfg.replication_factor } : {}),
    }));
    try {
      await admin.createTopics({ topics, waitForLeaders: true });
      log.info({ topics: missing.map((s) => s.topic) }, 'Kafka: created topics');
    } catch (e) {
      const type = (rootCause(e) as { type?: string })?.type ?? '';
      // Another replica starting at the same time may have won the race.
      if (type !== 'TOPIC_ALREADY_EXISTS') {
        if (/AUTHORIZATION/.test(type)) {
          throw new Error(
            `not allowed to create Kafka topics ${missing.map((s) => s.topic).join(', ')}: ${errText(rootCause(e))}; create them yourself (${missing.map(describeSpec).join('; ')}) and set kafka.create_topics: false, or grant CREATE on the cluster`,
          );
        }
        throw new Error(explainKafkaError(e, cfg, (rootCause(e) as { topic?: string })?.topic ?? missing[0]!.topic));
      }
    }
  }
  let meta;
  try {
    meta = await retrying(async () => {
      const m = await admin.fetchTopicMetadata({ topics: t.export ? [t.log, t.tokens, t.export] : [t.log, t.tokens] });
      // Just created (here or by a replica starting alongside): wait for leaders.
      if (m.topics.some((x) => x.partitions.some((p) => p.leader < 0))) throw Object.assign(new Error('no leader yet'), { retriable: true });
      return m;
    });
  } catch (e) {
    throw new Error(explainKafkaError(e, cfg, t.log));
  }
  const partitionsOf = (topic: string) => meta.topics.find((x) => x.name === topic)?.partitions.length || cfg.partitions;
  const logPartitions = partitionsOf(t.log);
  await checkTopicSettings(admin, cfg, log, logPartitions, meta.topics.find((x) => x.name === t.tokens)?.partitions.length ?? 1);
  return { logPartitions, exportPartitions: t.export ? partitionsOf(t.export) : 0 };
}

/**
 * Checks the settings of topics that may have been created by hand (or by an
 * older setup) against what the log's guarantees rest on. Compaction of the
 * log keeps about one events message per agent and partition, and a tokens
 * topic that deletes by age (delete without compact, or compact,delete with a
 * finite retention.ms) loses tokens: either way a replica rebuilt from
 * the topics lacks what the others have, so start-up stops. A shorter
 * retention or other partition count may be the operator's choice, so it is a
 * warning that says how to match the config to it.
 */
async function checkTopicSettings(admin: Admin, cfg: KafkaConfig, log: Logger, logPartitions: number, tokensPartitions: number): Promise<void> {
  const t = topicsOf(cfg);
  let res;
  try {
    res = await retrying(() =>
      admin.describeConfigs({
        includeSynonyms: false,
        resources: [
          { type: ConfigResourceTypes.TOPIC, name: t.log, configNames: ['cleanup.policy', 'retention.ms', 'retention.bytes'] },
          { type: ConfigResourceTypes.TOPIC, name: t.tokens, configNames: ['cleanup.policy', 'retention.ms', 'retention.bytes'] },
        ],
      }),
    );
  } catch (e) {
    const type = (rootCause(e) as { type?: string })?.type ?? '';
    if (!/AUTHORIZATION/.test(type)) throw new Error(explainKafkaError(e, cfg, t.log));
    // A missing DESCRIBE_CONFIGS grant (ACLs from before this check) must not stop a server that worked.
    log.warn(
      { topics: [t.log, t.tokens], error: errText(rootCause(e)) },
      `Kafka: cannot check the settings of topics ${t.log} and ${t.tokens} (cleanup.policy, retention): grant DESCRIBE_CONFIGS on topics ${cfg.topic_prefix}.* so that a compacted log or a tokens topic that deletes by age is refused at start-up`,
    );
    return;
  }
  const judged = judgeTopicSettings(res.resources, cfg, logPartitions, tokensPartitions);
  for (const w of judged.warnings) log.warn(w.fields, w.msg);
  if (judged.refused.length) throw new Error(`Kafka ${judged.refused.join('; and ')}`);
}

/** One topic's settings as DescribeConfigs answers them (kafkajs's DescribeConfigResponse resources). */
export interface DescribedTopic {
  resourceName: string;
  configEntries: readonly { configName: string; configValue: string | null }[];
}

/**
 * What the start-up check makes of the topics' settings: what stops the
 * server, and what it warns about. A setting the brokers did not return
 * (an entry left out, a topic the answer lacks) is not assumed to be the
 * default: the server starts and says it could not read it.
 */
export function judgeTopicSettings(
  resources: readonly DescribedTopic[],
  cfg: KafkaConfig,
  logPartitions: number,
  tokensPartitions = 1,
): { refused: string[]; warnings: { fields: Record<string, unknown>; msg: string }[] } {
  const t = topicsOf(cfg);
  const value = (topic: string, name: string): string | undefined =>
    resources.find((r) => r.resourceName === topic)?.configEntries.find((c) => c.configName === name)?.configValue ?? undefined;
  const alter = (topic: string, setting: string) =>
    `kafka-configs.sh --bootstrap-server ${cfg.brokers[0]} --alter --entity-type topics --entity-name ${topic} --add-config ${setting}`;
  const unread = (topic: string, name: string, wanted: string) => ({
    fields: { topic, setting: name },
    msg: `Kafka: could not read ${name} of topic ${topic} (the brokers did not return it), so it is not checked; make sure it is ${wanted}: kafka-configs.sh --bootstrap-server ${cfg.brokers[0]} --describe --entity-type topics --entity-name ${topic}`,
  });
  const refused: string[] = [];
  const warnings: { fields: Record<string, unknown>; msg: string }[] = [];
  const policies = (v: string) => v.split(',').map((x) => x.trim());

  const logPolicy = value(t.log, 'cleanup.policy');
  if (logPolicy === undefined) warnings.push(unread(t.log, 'cleanup.policy', 'delete'));
  else if (policies(logPolicy).includes('compact')) {
    refused.push(
      `topic ${t.log} (the alert log) has cleanup.policy=${logPolicy}: compaction keeps only the newest message per key, and events messages are keyed by agent, so a replica rebuilt from the log would lose alerts and counts; make it delete only: ${alter(t.log, 'cleanup.policy=delete')}`,
    );
  }

  // Compaction keeps every key's newest row for good; `delete` alongside it drops even those once older than retention.ms.
  const tokensPolicy = value(t.tokens, 'cleanup.policy');
  const tokensMsText = value(t.tokens, 'retention.ms');
  const tokensMs = tokensMsText === undefined ? undefined : Number(tokensMsText);
  const lost = 'so agents, feed and CI tokens registered before that would be unknown to a replica rebuilt from it';
  if (tokensPolicy === undefined) warnings.push(unread(t.tokens, 'cleanup.policy', 'compact'));
  else if (!policies(tokensPolicy).includes('compact')) {
    const age =
      tokensMs !== undefined && tokensMs >= 0
        ? `Kafka deletes its rows after ${formatDuration(tokensMs)} (retention.ms=${tokensMs}), ${lost}`
        : `it is not compacted, so it keeps every change of every token until a retention set on it deletes rows by age, and then agents, feed and CI tokens registered before that would be unknown to a replica rebuilt from it`;
    refused.push(
      `topic ${t.tokens} (agent and feed tokens) has cleanup.policy=${tokensPolicy}: ${age}; make it compact only: ${alter(t.tokens, 'cleanup.policy=compact')}`,
    );
  } else if (policies(tokensPolicy).includes('delete')) {
    if (tokensMs === undefined) warnings.push(unread(t.tokens, 'retention.ms', '-1 (with cleanup.policy=compact,delete)'));
    else if (tokensMs >= 0) {
      refused.push(
        `topic ${t.tokens} (agent and feed tokens) has cleanup.policy=${tokensPolicy} with retention.ms=${tokensMs} (${formatDuration(tokensMs)}): Kafka deletes rows older than that even when they are a token's newest, ${lost}; make it compact only: ${alter(t.tokens, 'cleanup.policy=compact')} (or keep compact,delete with ${alter(t.tokens, 'retention.ms=-1')})`,
      );
    }
    const tokensBytes = Number(value(t.tokens, 'retention.bytes') ?? '-1');
    if (tokensBytes >= 0) {
      refused.push(
        `topic ${t.tokens} (agent and feed tokens) has cleanup.policy=${tokensPolicy} with retention.bytes=${tokensBytes}: Kafka deletes the oldest rows once the partition holds that many bytes, even when they are a token's newest, ${lost}; make it compact only: ${alter(t.tokens, 'cleanup.policy=compact')} (or keep compact,delete with ${alter(t.tokens, 'retention.bytes=-1')})`,
      );
    }
  }
  // Integration specs and their disabled states (two keys per name) are applied in the topic's order, which Kafka
  // keeps only within a partition.
  if (tokensPartitions > 1) {
    const b = cfg.brokers[0];
    refused.push(
      `topic ${t.tokens} (agent and feed tokens) has ${tokensPartitions} partitions: replicas apply webhook integration changes in the topic's order, which Kafka keeps only within one partition, so they could end at different integrations; Kafka cannot lower a topic's partition count, so recreate it with one partition while every server is stopped: kafka-topics.sh --bootstrap-server ${b} --delete --topic ${t.tokens}, then kafka-topics.sh --bootstrap-server ${b} --create --topic ${t.tokens} --partitions 1 --config cleanup.policy=compact (make again through the admin API the integrations made there)`,
    );
  }
  if (refused.length) return { refused, warnings };

  const retentionMs = Number(value(t.log, 'retention.ms') ?? '-1');
  if (retentionMs >= 0 && (cfg.log_retention < 0 || retentionMs < cfg.log_retention)) {
    const wanted = cfg.log_retention < 0 ? 'infinite' : formatDuration(cfg.log_retention);
    warnings.push({
      fields: { topic: t.log, retention_ms: retentionMs, log_retention: wanted },
      msg: `Kafka: topic ${t.log} keeps the alert log for ${formatDuration(retentionMs)} (retention.ms=${retentionMs}), less than ${cfg.from_flag ? 'the' : 'kafka.log_retention'} ${wanted}: a replica rebuilt from it lacks the alerts older than that; raise it: ${alter(t.log, `retention.ms=${cfg.log_retention}`)}${cfg.from_flag ? '' : `, or set kafka.log_retention: ${formatDuration(retentionMs)} to accept it`}`,
    });
  }
  const retentionBytes = Number(value(t.log, 'retention.bytes') ?? '-1');
  if (retentionBytes >= 0) {
    warnings.push({
      fields: { topic: t.log, retention_bytes: retentionBytes },
      msg: `Kafka: topic ${t.log} drops its oldest messages once a partition holds ${retentionBytes} bytes (retention.bytes): a replica rebuilt from it lacks those alerts; bound the log by time instead: ${alter(t.log, 'retention.bytes=-1')}`,
    });
  }
  if (logPartitions !== cfg.partitions) {
    warnings.push({
      fields: { topic: t.log, partitions: logPartitions, configured: cfg.partitions },
      msg: `Kafka: topic ${t.log} has ${logPartitions} partitions, not the ${cfg.partitions} of ${cfg.from_flag ? 'the default' : 'kafka.partitions'}; Verdict uses the topic's ${logPartitions} (at most ${logPartitions} replicas share webhook and export delivery)${cfg.from_flag ? '' : `; set kafka.partitions: ${logPartitions} to match`}`,
    });
  }
  return { refused, warnings };
}

function describeSpec(s: TopicSpec): string {
  const cfgs = s.configEntries.map((c) => ` --config ${c.name}=${c.value}`).join('');
  return `kafka-topics.sh --create --topic ${s.topic} --partitions ${s.numPartitions}${cfgs} for the ${s.what}`;
}
