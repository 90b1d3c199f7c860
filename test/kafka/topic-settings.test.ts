// Topics that exist before a `verdict server` starts (created by hand, or by an
// older setup) are checked against what the log's guarantees rest on, on a real
// broker (scripts/kafka.sh): a compacted log or a tokens topic that deletes by
// age stops start-up with the kafka-configs.sh command that fixes it; a shorter
// retention or another partition count starts with a warning. The decision on
// each combination of settings is unit-tested in src/server/kafka/client.test.ts.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import kafkajs from 'kafkajs';
import type { ITopicConfig } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { brokerPerFile } from '../helpers/kafka-broker.js';
import { freePort, spawnVerdict, verdictRun } from '../helpers/processes.js';

const { Kafka, logLevel } = kafkajs;

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-topic-settings-'));
const broker = brokerPerFile(dir);

let admin: kafkajs.Admin | undefined;
afterAll(async () => {
  await admin?.disconnect();
});

async function createTopics(topics: ITopicConfig[]): Promise<void> {
  if (!admin) {
    admin = new Kafka({ clientId: 'verdict-topic-settings-test', brokers: [broker().bootstrap], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  }
  await admin.createTopics({ topics, waitForLeaders: true });
}

/** A server config on its own topic prefix; `brokers` defaults to the test broker. */
async function serverConfig(name: string, prefix: string, brokers = broker().bootstrap, extra = ''): Promise<string> {
  const config = join(dir, `${name}.yaml`);
  writeFileSync(
    config,
    `data_dir: ${join(dir, name)}
http_addr: 127.0.0.1:${await freePort()}
grpc_addr: 127.0.0.1:${await freePort()}
kafka:
  brokers: [${brokers}]
  topic_prefix: ${prefix}
  export_topic: ""
  partitions: 6
  connection_timeout: 2s
${extra}`,
  );
  return config;
}

const prefix = () => `ts${randomUUID().slice(0, 8)}`;

describe('topics that exist at start-up', () => {
  it('refuses a compacted alert log, naming the setting and the command that fixes it', async () => {
    const p = prefix();
    await createTopics([
      { topic: `${p}.log`, numPartitions: 6, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
      { topic: `${p}.tokens`, numPartitions: 1, configEntries: [{ name: 'cleanup.policy', value: 'compact' }] },
    ]);
    const r = verdictRun(['server', '--config', await serverConfig('compacted-log', p)], { timeout: 60_000 });
    expect(r.status, r.stderr + r.stdout).toBe(1);
    const out = r.stderr + r.stdout;
    expect(out).toContain(`topic ${p}.log (the alert log) has cleanup.policy=compact`);
    expect(out).toContain(
      `kafka-configs.sh --bootstrap-server ${broker().bootstrap} --alter --entity-type topics --entity-name ${p}.log --add-config cleanup.policy=delete`,
    );
  }, 90_000);

  it('refuses a tokens topic that deletes by age', async () => {
    const p = prefix();
    await createTopics([
      { topic: `${p}.log`, numPartitions: 6, configEntries: [{ name: 'cleanup.policy', value: 'delete' }] },
      { topic: `${p}.tokens`, numPartitions: 3, configEntries: [{ name: 'cleanup.policy', value: 'delete' }] },
    ]);
    const r = verdictRun(['server', '--config', await serverConfig('deleting-tokens', p)], { timeout: 60_000 });
    expect(r.status, r.stderr + r.stdout).toBe(1);
    const out = r.stderr + r.stdout;
    expect(out).toContain(`topic ${p}.tokens (agent and feed tokens) has cleanup.policy=delete: Kafka deletes its rows after 168h (retention.ms=604800000)`);
    expect(out).toContain(`--entity-name ${p}.tokens --add-config cleanup.policy=compact`);
  }, 90_000);

  it('starts with a log of a shorter retention and fewer partitions, warning how to match them, and tokens on compact,delete kept forever', async () => {
    const p = prefix();
    await createTopics([
      { topic: `${p}.log`, numPartitions: 2, configEntries: [{ name: 'retention.ms', value: '60000' }] },
      {
        topic: `${p}.tokens`,
        numPartitions: 1,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact,delete' },
          { name: 'retention.ms', value: '-1' },
        ],
      },
    ]);
    const s = spawnVerdict(['server', '--config', await serverConfig('short-log', p)], 'server');
    const retention = await s.waitForLog((l) => /keeps the alert log for/.test(l.msg), 60_000, 'the retention warning');
    expect(retention.level).toBe('warn');
    expect(retention.msg).toBe(
      `Kafka: topic ${p}.log keeps the alert log for 1m (retention.ms=60000), less than kafka.log_retention infinite: a replica rebuilt from it lacks the alerts older than that; raise it: kafka-configs.sh --bootstrap-server ${broker().bootstrap} --alter --entity-type topics --entity-name ${p}.log --add-config retention.ms=-1, or set kafka.log_retention: 1m to accept it`,
    );
    const partitions = await s.waitForLog((l) => /partitions, not the/.test(l.msg), 10_000, 'the partitions warning');
    expect(partitions.msg).toMatch(/has 2 partitions, not the 6 of kafka\.partitions; Verdict uses the topic's 2 .*set kafka\.partitions: 2 to match/);
    await s.waitForLog((l) => l.msg === 'Kafka: this server is a replica on the shared alert log', 60_000, 'the replica to join');
    await s.kill();
  }, 120_000);
});

describe('kafka.brokers naming a port that is not a Kafka broker', () => {
  it('says the address may not be a Kafka broker', async () => {
    const http = createServer((_req, res) => res.end('not kafka'));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    try {
      const addr = `127.0.0.1:${(http.address() as AddressInfo).port}`;
      // Spawned, not run synchronously: this process must go on answering HTTP meanwhile.
      const s = spawnVerdict(['server', '--config', await serverConfig('not-kafka', prefix(), addr)], 'server');
      expect(await s.exited, s.stderr + s.stdout).toBe(1);
      expect(s.stderr + s.stdout).toMatch(new RegExp(`${addr} took the connection but closed it on the first Kafka request, so it may not be a Kafka broker`));
    } finally {
      http.close();
    }
  }, 90_000);

  it('says so too for a port that never answers a Kafka request', async () => {
    const silent = createNetServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const addr = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
      const s = spawnVerdict(['server', '--config', await serverConfig('silent', prefix(), addr, '  request_timeout: 1s\n')], 'server');
      expect(await s.exited, s.stderr + s.stdout).toBe(1);
      expect(s.stderr + s.stdout).toMatch(
        new RegExp(`${addr} took the connection but did not answer the first Kafka request, so it may not be a Kafka broker`),
      );
    } finally {
      silent.close();
    }
  }, 120_000);
});
