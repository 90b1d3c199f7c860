import kafkajs from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { kafkaConfigForBootstrap } from '../../shared/config/kafka-config.js';
import { explainKafkaError } from './client.js';

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
