import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { kafkaConfigForBootstrap } from '../../shared/config/kafka-config.js';
import { explainKafkaError, judgeTopicSettings, type DescribedTopic } from './client.js';

// The advice names the settings where the brokers came from: a config file's kafka: keys, or, for the demo's
// --kafka, that flag, and no key the demo has no way to set.

// kafkajs's own error for a broker's answer; its typings only take a message, the broker's error type is set on it.
const refused = (type: string, message: string) => Object.assign(new kafkajs.KafkaJSProtocolError(message), { type });
const BROKER_ANSWERS = [
  refused('INVALID_REPLICATION_FACTOR', 'Replication-factor is invalid'),
  refused('INVALID_SESSION_TIMEOUT', 'The session timeout is not within the range allowed by the broker'),
  refused('UNKNOWN_TOPIC_OR_PARTITION', 'This server does not host this topic-partition'),
  refused('SASL_AUTHENTICATION_FAILED', 'SASL Authentication failed'),
  new kafkajs.KafkaJSConnectionError('Connection error: write EPROTO wrong version number'),
  new kafkajs.KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:1'),
];

describe('explainKafkaError', () => {
  it('names the kafka: keys for a config file', () => {
    const cfg = kafkaConfigForBootstrap('127.0.0.1:1');
    const said = BROKER_ANSWERS.map((e) => explainKafkaError(e, cfg, 'verdict.log'));
    expect(said[0]).toMatch(/lower kafka\.replication_factor/);
    expect(said[1]).toMatch(/^Kafka refused kafka\.session_timeout 30s/);
    expect(said[2]).toMatch(/set kafka\.create_topics: true/);
    expect(said[3]).toMatch(/check kafka\.sasl\.username and kafka\.sasl\.password/);
    expect(said[4]).toMatch(/check kafka\.tls/);
    expect(said[5]).toMatch(/^cannot reach the Kafka brokers 127\.0\.0\.1:1: .*; check kafka\.brokers and that the brokers run/);
  });

  it('names the flag, and no kafka: key, for brokers from a flag', () => {
    // A copy keeps the flag: the server merges and passes configs on, and the source is part of the value.
    const cfg = structuredClone({ ...kafkaConfigForBootstrap('127.0.0.1:1', {}, '--kafka') });
    const said = BROKER_ANSWERS.map((e) => explainKafkaError(e, cfg, 'verdict.log'));
    expect(said[0]).toMatch(
      /^Kafka cannot create verdict\.log with the brokers' default\.replication\.factor .*lower default\.replication\.factor on the brokers/,
    );
    expect(said[1]).toMatch(/^Kafka refused the consumer session timeout of 30s .*widen the brokers' group\.min\.session\.timeout\.ms/);
    expect(said[2]).toMatch(/grant CREATE on the cluster so that Verdict creates it or create it as docs\/kafka\.md describes$/);
    expect(said[3]).toMatch(
      /; --kafka logs in to no broker: give brokers that take clients without SASL, or run a server with a config file that sets kafka\.sasl$/,
    );
    expect(said[4]).toMatch(
      /; --kafka connects without TLS: give a broker listener that takes plain connections, or run a server with a config file that sets kafka\.tls$/,
    );
    expect(said[5]).toMatch(/^cannot reach the Kafka brokers 127\.0\.0\.1:1: .*; check --kafka 127\.0\.0\.1:1 and that the brokers run/);
    // "run a server with a config file that sets kafka.sasl/kafka.tls" is the way out, not a key to set here.
    for (const s of said) expect(s.replace(/a config file that sets kafka\.(sasl|tls)/, '')).not.toMatch(/\bkafka\.(?!md\b)[a-z_]+/);
  });
});

describe('explainKafkaError for a port that is not a Kafka broker', () => {
  it('says the address may not be a broker when it closes at, or never answers, the first request', () => {
    const cfg = kafkaConfigForBootstrap('127.0.0.1:8080');
    const closed = explainKafkaError(new kafkajs.KafkaJSConnectionError('Closed connection'), cfg);
    expect(closed).toMatch(
      /took the connection but closed it on the first Kafka request, so it may not be a Kafka broker: check the port is a broker listener/,
    );
    // kafkajs's plain Error once the first request (ApiVersions) timed out.
    const silent = explainKafkaError(new Error('Broker not connected'), cfg);
    expect(silent).toMatch(/^cannot reach the Kafka brokers 127\.0\.0\.1:8080: .*did not answer the first Kafka request, so it may not be a Kafka broker/);
  });
  it('names DESCRIBE_CONFIGS among the topic ACLs', () => {
    const cfg = kafkaConfigForBootstrap('127.0.0.1:9092');
    expect(explainKafkaError(refused('TOPIC_AUTHORIZATION_FAILED', 'Not authorized to access topics'), cfg, 'verdict.log')).toMatch(
      /grant READ, WRITE, DESCRIBE and DESCRIBE_CONFIGS on topics verdict\.\*/,
    );
  });
});

describe('judgeTopicSettings (the start-up check of existing topics)', () => {
  const cfg = kafkaConfigForBootstrap('127.0.0.1:9092');
  /** DescribeConfigs' answer for the log and tokens topics; `undefined` leaves the entry out, as a broker may. */
  const described = (
    tokens: Record<string, string | undefined>,
    log: Record<string, string | undefined> = { 'cleanup.policy': 'delete', 'retention.ms': '-1' },
  ): DescribedTopic[] =>
    Object.entries({ 'verdict.log': log, 'verdict.tokens': tokens }).map(([resourceName, entries]) => ({
      resourceName,
      configEntries: Object.entries(entries)
        .filter((e): e is [string, string] => e[1] !== undefined)
        .map(([configName, configValue]) => ({ configName, configValue })),
    }));
  const judge = (tokens: Record<string, string | undefined>, log?: Record<string, string | undefined>) =>
    judgeTopicSettings(described(tokens, log), cfg, cfg.partitions);

  it('accepts a compacted tokens topic, and compact,delete that never deletes by age', () => {
    expect(judge({ 'cleanup.policy': 'compact', 'retention.ms': '604800000' })).toEqual({ refused: [], warnings: [] });
    expect(judge({ 'cleanup.policy': 'compact,delete', 'retention.ms': '-1' })).toEqual({ refused: [], warnings: [] });
  });

  it('refuses compact,delete with a finite retention, naming it and both ways out', () => {
    const { refused } = judge({ 'cleanup.policy': 'compact,delete', 'retention.ms': '604800000' });
    expect(refused).toEqual([
      "topic verdict.tokens (agent and feed tokens) has cleanup.policy=compact,delete with retention.ms=604800000 (168h): Kafka deletes rows older than that even when they are a token's newest, so agents, feed and CI tokens registered before that would be unknown to a replica rebuilt from it; make it compact only: kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --alter --entity-type topics --entity-name verdict.tokens --add-config cleanup.policy=compact (or keep compact,delete with kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --alter --entity-type topics --entity-name verdict.tokens --add-config retention.ms=-1)",
    ]);
  });

  it('refuses delete without compact, saying what deletes rows only when something does', () => {
    const [aged] = judge({ 'cleanup.policy': 'delete', 'retention.ms': '86400000' }).refused;
    expect(aged).toMatch(
      /^topic verdict\.tokens \(agent and feed tokens\) has cleanup\.policy=delete: Kafka deletes its rows after 24h \(retention\.ms=86400000\)/,
    );
    const [forever] = judge({ 'cleanup.policy': 'delete', 'retention.ms': '-1' }).refused;
    expect(forever).toMatch(
      /^topic verdict\.tokens \(agent and feed tokens\) has cleanup\.policy=delete: it is not compacted, so it keeps every change of every token until a retention set on it deletes rows by age/,
    );
    expect(forever).not.toMatch(/deletes its rows by age \(retention\.ms=-1/);
    expect(forever).toMatch(/--add-config cleanup\.policy=compact$/);
  });

  it('warns, and does not refuse, when the brokers leave a setting out', () => {
    const { refused, warnings } = judge({ 'retention.ms': '-1' }, { 'retention.ms': '-1' });
    expect(refused).toEqual([]);
    expect(warnings.map((w) => w.msg)).toEqual([
      'Kafka: could not read cleanup.policy of topic verdict.log (the brokers did not return it), so it is not checked; make sure it is delete: kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --describe --entity-type topics --entity-name verdict.log',
      'Kafka: could not read cleanup.policy of topic verdict.tokens (the brokers did not return it), so it is not checked; make sure it is compact: kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --describe --entity-type topics --entity-name verdict.tokens',
    ]);
    expect(judge({ 'cleanup.policy': 'compact,delete' }).warnings.map((w) => w.msg)).toEqual([
      'Kafka: could not read retention.ms of topic verdict.tokens (the brokers did not return it), so it is not checked; make sure it is -1 (with cleanup.policy=compact,delete): kafka-configs.sh --bootstrap-server 127.0.0.1:9092 --describe --entity-type topics --entity-name verdict.tokens',
    ]);
  });

  it("refuses compact,delete with a size bound, which deletes a token's newest row too", () => {
    const { refused } = judge({ 'cleanup.policy': 'compact,delete', 'retention.ms': '-1', 'retention.bytes': '1073741824' });
    expect(refused).toEqual([
      expect.stringMatching(
        /^topic verdict\.tokens \(agent and feed tokens\) has cleanup\.policy=compact,delete with retention\.bytes=1073741824: .*--add-config retention\.bytes=-1\)$/,
      ),
    ]);
    expect(judge({ 'cleanup.policy': 'compact', 'retention.ms': '-1', 'retention.bytes': '1073741824' }).refused).toEqual([]);
  });

  it('refuses a tokens topic of more than one partition, with the commands to recreate it', () => {
    const ok = { 'cleanup.policy': 'compact', 'retention.ms': '-1' };
    expect(judgeTopicSettings(described(ok), cfg, cfg.partitions, 1).refused).toEqual([]);
    expect(judgeTopicSettings(described(ok), cfg, cfg.partitions, 3).refused).toEqual([
      expect.stringMatching(
        /^topic verdict\.tokens \(agent and feed tokens\) has 3 partitions: .*kafka-topics\.sh --bootstrap-server 127\.0\.0\.1:9092 --create --topic verdict\.tokens --partitions 1 --config cleanup\.policy=compact/,
      ),
    ]);
  });

  it('still refuses a compacted alert log', () => {
    expect(judge({ 'cleanup.policy': 'compact' }, { 'cleanup.policy': 'compact,delete', 'retention.ms': '-1' }).refused).toEqual([
      expect.stringMatching(/^topic verdict\.log \(the alert log\) has cleanup\.policy=compact,delete: .*--add-config cleanup\.policy=delete$/),
    ]);
  });
});
