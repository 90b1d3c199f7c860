import { serverConfigIssues } from '../../../test/helpers/server-config.js';
import { describe, expect, it } from 'vitest';
import { kafkaConfigForBootstrap } from './kafka-config.js';
import { ConfigError, parseYamlConfig } from './schema.js';
import { serverConfigSchema } from './server-config.js';

const issues = serverConfigIssues;

describe('kafka config block', () => {
  it('fills defaults; without the block the server stays on SQLite alone', () => {
    expect(parseYamlConfig('data_dir: /tmp/x\n', 'server.yaml', serverConfigSchema).value.kafka).toBeUndefined();
    const cfg = parseYamlConfig('kafka:\n  brokers: [kafka-0.kafka:9092, kafka-1.kafka:9093]\n', 'server.yaml', serverConfigSchema).value.kafka!;
    expect(cfg).toMatchObject({
      brokers: ['kafka-0.kafka:9092', 'kafka-1.kafka:9093'],
      topic_prefix: 'verdict',
      client_id: 'verdict-server',
      partitions: 6,
      log_retention: -1,
      export_topic: 'verdict.alerts',
      export_window: 5_000,
      create_topics: true,
      compression: 'none',
      session_timeout: 30_000,
    });
    expect(cfg.tls).toBeUndefined();
    expect(cfg.sasl).toBeUndefined();
  });

  it('takes TLS, SASL with a secret reference, and a retention', () => {
    process.env.VERDICT_TEST_KAFKA_PASSWORD = 's3cret';
    try {
      const cfg = parseYamlConfig(
        `kafka:
  brokers: [b:9093]
  log_retention: 720h
  export_topic: ""
  tls: {ca_file: /etc/kafka/ca.pem}
  sasl: {mechanism: scram-sha-512, username: verdict, password: env:VERDICT_TEST_KAFKA_PASSWORD}
`,
        'server.yaml',
        serverConfigSchema,
      ).value.kafka!;
      expect(cfg).toMatchObject({
        log_retention: 720 * 3_600_000,
        export_topic: '',
        tls: { enabled: true, ca_file: '/etc/kafka/ca.pem' },
        sasl: { mechanism: 'scram-sha-512', username: 'verdict' },
      });
    } finally {
      delete process.env.VERDICT_TEST_KAFKA_PASSWORD;
    }
  });

  it('reports every problem with its line and what to do', () => {
    expect(
      issues(`kafka:
  brokers: [kafka-0]
  partitions: 0
  sasl: {mechanism: gssapi, username: u, password: env:VERDICT_TEST_UNSET_VAR}
  tls: {cert_file: /c.pem}
  log_retention: soon
`),
    ).toEqual([
      '2: kafka.brokers[0]: "kafka-0" is not valid: host:port of a Kafka broker, e.g. kafka-0.kafka:9092',
      '3: kafka.partitions: must be at least 1',
      '4: kafka.sasl.mechanism: must be one of "plain", "scram-sha-256", "scram-sha-512"; got "gssapi"',
      '4: kafka.sasl.password: environment variable VERDICT_TEST_UNSET_VAR is not set; export it before starting the server, or use file:/path',
      '6: kafka.log_retention: must be a duration such as 500ms, 10s, 5m or 1h, got "soon"',
    ]);
    expect(issues('kafka:\n  brokers: [b:9092]\n  tls: {cert_file: /c.pem}\n')).toEqual([
      '3: kafka.tls: give cert_file and key_file together (mutual TLS), or neither',
    ]);
    expect(issues('kafka:\n  brokers: [b:9092]\n  export_topic: verdict.log\n')).toEqual([
      '3: kafka.export_topic: "verdict.log" is one of Verdict\'s internal topics; pick another name, e.g. verdict.alerts',
    ]);
    expect(issues('kafka:\n  topic_prefix: v\n')).toEqual(['2: kafka.brokers: is required']);
    expect(issues('kafka:\n  brokers: [b:9092]\n  session_timeout: 1h\n')).toEqual([
      '3: kafka.session_timeout: must be at most 1800000 ms (brokers refuse more than group.max.session.timeout.ms, 30m by default)',
    ]);
  });

  it('checks each broker as an address to dial, as every other host:port, and one kafkajs can dial', () => {
    const hint = 'host:port of a Kafka broker, e.g. kafka-0.kafka:9092';
    expect(
      issues(`kafka:
  brokers:
    - kafka-0.kafka:0
    - kafka-1.kafka:99999
    - :9092
    - "[:]:9092"
    - fd00::1:9092
    - kafka_2.kafka:9092
    - "[fd00::1]:9092"
    - kafka-3.kafka:9092
`),
    ).toEqual([
      `3: kafka.brokers[0]: port 0 picks a free port only for a listener; give the port to connect to: ${hint}`,
      `4: kafka.brokers[1]: port 99999 is over 65535: ${hint}`,
      `5: kafka.brokers[2]: ":9092" names no host to connect to: ${hint}`,
      `6: kafka.brokers[3]: "[:]" is not an IPv6 address: ${hint}`,
      `7: kafka.brokers[4]: the Kafka client cannot connect to an IPv6 address written out ("fd00::1:9092"); give a host name that resolves to it (DNS or /etc/hosts): ${hint}`,
      `9: kafka.brokers[6]: the Kafka client cannot connect to an IPv6 address written out ("[fd00::1]:9092"); give a host name that resolves to it (DNS or /etc/hosts): ${hint}`,
    ]);
    expect(issues('kafka:\n  brokers: kafka-0.kafka:9092\n')).toEqual(['2: kafka.brokers: must be a list, e.g. brokers: ["kafka-0.kafka:9092"]']);
  });

  it('builds the block from a bootstrap list (verdict demo --kafka)', () => {
    expect(kafkaConfigForBootstrap('127.0.0.1:9092, 127.0.0.1:9093').brokers).toEqual(['127.0.0.1:9092', '127.0.0.1:9093']);
    expect(() => kafkaConfigForBootstrap('localhost')).toThrow(ConfigError);
    expect(kafkaConfigForBootstrap('127.0.0.1:9092', {}, '--kafka').from_flag).toBe('--kafka');
    expect(kafkaConfigForBootstrap('127.0.0.1:9092').from_flag).toBeUndefined();
  });

  it('refuses from_flag in a config file: only a command-line flag sets where the brokers came from', () => {
    const said = issues('kafka:\n  brokers: [kafka-0.kafka:9092]\n  from_flag: --kafka\n');
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/^3: kafka\.from_flag: /);
    expect(() => kafkaConfigForBootstrap('127.0.0.1:9092', { from_flag: '--kafka' })).toThrow(ConfigError);
  });
});
