import { isIPv6 } from 'node:net';
import { isMap, isScalar, type Node } from 'yaml';
import { bool, duration, field, int, list, obj, oneOf, parseYamlConfig, str, type Validator, reportIssue, refine } from './schema.js';
import { hostPort } from './host-port.js';
import { resolveSecretRef } from './webhooks-config.js';

// The `kafka:` block of the server config. Without it the server keeps its
// alert log in SQLite alone; with it, replicas share one alert log in Kafka
// (docs/kafka.md). Secrets (SASL password, TLS key) take `env:VAR` or
// `file:/path` like the webhook secrets, so the config file can be public.

// A broker is dialled: it needs a host and a port other than 0. kafkajs splits
// a broker at its first ":", so an IPv6 address, even in brackets, would fail
// only at start-up, with "getaddrinfo ENOTFOUND [".
const BROKER_HINT = 'host:port of a Kafka broker, e.g. kafka-0.kafka:9092';
const dialable = hostPort(BROKER_HINT, { dial: true });
const broker: Validator<string> = (node, path, ctx, key) => {
  const v = isScalar(node) ? node.value : undefined;
  const host = typeof v === 'string' ? /^\[?(.*?)\]?:\d{1,5}$/.exec(v)?.[1] : undefined;
  if (host !== undefined && isIPv6(host)) {
    return reportIssue(
      ctx,
      node,
      path,
      `the Kafka client cannot connect to an IPv6 address written out ("${v}"); give a host name that resolves to it (DNS or /etc/hosts): ${BROKER_HINT}`,
    );
  }
  return dialable(node, path, ctx, key);
};

// Kafka's own rule for topic names, minus the prefix's dot we add.
const TOPIC_RE = /^[A-Za-z0-9._-]{1,200}$/;
const topicName = str({ pattern: TOPIC_RE, hint: 'letters, digits, ".", "_" or "-"' });

const secret: Validator<string> = refine(str({ nonEmpty: true, sensitive: true }), (ref) => {
  try {
    return resolveSecretRef(ref) === '' ? 'must not be empty' : undefined;
  } catch (e) {
    return (e as Error).message;
  }
});

/** "infinite" or a duration; -1 means infinite, as in Kafka's retention.ms. */
const retention: Validator<number> = (node, path, ctx) => {
  const v = isScalar(node) ? node.value : undefined;
  if (v === 'infinite' || v === -1) return -1;
  return duration({ min: 60_000 })(node, path, ctx);
};

export const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;

const kafkaFields = obj({
  brokers: field(list(broker, { min: 1 }), { required: true }),
  /** Topics are <topic_prefix>.log and <topic_prefix>.tokens; groups <topic_prefix>.delivery and <topic_prefix>.projection.<replica>. */
  topic_prefix: field(topicName, { default: 'verdict' }),
  client_id: field(str({ nonEmpty: true }), { default: 'verdict-server' }),
  /** Partitions of the log topic when Verdict creates it; more allow more replicas to share webhook and export work. */
  partitions: field(int({ min: 1, max: 1000 }), { default: 6 }),
  /** Replication factor of the topics Verdict creates; absent: the brokers' default.replication.factor. */
  replication_factor: field(int({ min: 1, max: 32 })),
  /** How long the log keeps alert events. A replica can only rebuild what the log still has. */
  log_retention: field(retention, { default: -1 }),
  /** Topic for downstream consumers (SIEMs), one JSON message per alert change; "" turns the export off. */
  export_topic: field(str({ pattern: /^([A-Za-z0-9._-]{1,249})?$/, hint: 'a topic name, or "" for no export' }), { default: 'verdict.alerts' }),
  /**
   * How long the export coalesces an alert's changes: each changed alert is
   * exported once per window, as it stands at the end of it; 0 exports after
   * every fetch of the log (about every 0.5 s).
   */
  export_window: field(duration({ min: 0, max: 300_000, maxWhy: 'an export this far behind the log is no longer live' }), { default: 5_000 }),
  /** Create missing topics at start-up (needs CREATE on the cluster); false: they must exist. */
  create_topics: field(bool(), { default: true }),
  compression: field(oneOf(['none', 'gzip'] as const), { default: 'none' }),
  connection_timeout: field(duration({ min: 100 }), { default: 5_000 }),
  request_timeout: field(duration({ min: 1_000 }), { default: 30_000 }),
  /** Consumer group session timeout: how long a crashed replica's partitions wait before another takes them. */
  // Kafka's default group.min/max.session.timeout.ms: a value outside is refused by the brokers at start-up.
  session_timeout: field(duration({ min: 6_000, max: 1_800_000, maxWhy: 'brokers refuse more than group.max.session.timeout.ms, 30m by default' }), {
    default: 30_000,
  }),
  tls: field(
    obj({
      enabled: field(bool(), { default: true }),
      ca_file: field(str({ nonEmpty: true, hint: "PEM file of the CA that signed the brokers' certificates" })),
      cert_file: field(str({ nonEmpty: true, hint: 'PEM client certificate, for mutual TLS' })),
      key_file: field(str({ nonEmpty: true, hint: 'PEM private key of cert_file' })),
      server_name: field(str({ nonEmpty: true })),
      insecure_skip_verify: field(bool(), { default: false }),
    }),
  ),
  sasl: field(
    obj({
      mechanism: field(oneOf(SASL_MECHANISMS), { required: true }),
      username: field(str({ nonEmpty: true }), { required: true }),
      password: field(secret, { required: true }),
    }),
  ),
});

type Out<V> = V extends Validator<infer T> ? T : never;
export type KafkaConfig = Out<typeof kafkaFields> & {
  /**
   * The command-line flag the brokers came from (the demo's --kafka), so that
   * errors name it rather than kafka: keys the user has no file to set. Not a
   * key of kafkaFields: a config file cannot set it, and the value carries it
   * through every copy of the config.
   */
  from_flag?: string;
};

/** Rules that span fields, reported at the field that has to change. */
export const kafkaConfigSchema: Validator<KafkaConfig> = (node, path, ctx) => {
  const before = ctx.issues.length;
  const cfg = kafkaFields(node, path, ctx);
  if (!cfg || ctx.issues.length > before) return undefined;
  const at = (k: string) => (isMap(node) ? (node.get(k, true) as Node | undefined) : undefined) ?? node;
  if (cfg.tls && Boolean(cfg.tls.cert_file) !== Boolean(cfg.tls.key_file)) {
    reportIssue(ctx, at('tls'), `${path}.tls`, 'give cert_file and key_file together (mutual TLS), or neither');
  }
  const internal = [`${cfg.topic_prefix}.log`, `${cfg.topic_prefix}.tokens`];
  if (internal.includes(cfg.export_topic)) {
    reportIssue(
      ctx,
      at('export_topic'),
      `${path}.export_topic`,
      `"${cfg.export_topic}" is one of Verdict's internal topics; pick another name, e.g. verdict.alerts`,
    );
  }
  return ctx.issues.length > before ? undefined : cfg;
};

/** Validates a JSON value as a kafka block (the demo and tests build one from a bootstrap address). */
export function parseKafkaJson(value: unknown, what = 'kafka'): KafkaConfig {
  return parseYamlConfig(JSON.stringify(value ?? null, null, 2), what, kafkaConfigSchema).value;
}

/**
 * The kafka block for a comma-separated bootstrap list, all else default;
 * `flag` names the command-line flag it came from (`verdict demo --kafka`).
 */
export function kafkaConfigForBootstrap(bootstrap: string, extra: Record<string, unknown> = {}, flag?: string): KafkaConfig {
  const brokers = bootstrap
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  const cfg = parseKafkaJson({ brokers, ...extra }, flag ?? '--kafka');
  return flag ? { ...cfg, from_flag: flag } : cfg;
}
