// The Kafka metrics (verdict_kafka_*) are on /metrics of a server with kafka
// configured only: a server without Kafka exported them too (all zero), as
// their files are imported either way. Servers in this process, the Kafka one
// on a real broker (scripts/kafka.sh); the one without Kafka starts first, as
// the metrics of a process are its own once exposed.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { tempDir } from '../helpers/processes.js';

const dir = tempDir('verdict-kafka-metrics-');
const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
let broker: Broker;
let kafka: KafkaConfig;

beforeAll(() => {
  broker = startBroker(tempDir('verdict-kafka-state-'));
  kafka = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: `t${randomUUID().slice(0, 8)}`, partitions: 1, session_timeout: '6s' });
}, 320_000);

afterAll(() => {
  if (broker) stopBroker(broker);
}, 90_000);

async function metricsOf(name: string, extra: { kafka?: KafkaConfig } = {}): Promise<string> {
  const s: RunningServer = await startServer(
    { ...SERVER_DEFAULTS, data_dir: join(dir, name), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', ...extra },
    log.child({ replica: name }),
  );
  try {
    const res = await fetch(`http://${s.httpAddress}/metrics`);
    expect(res.status).toBe(200);
    return await res.text();
  } finally {
    await s.close();
  }
}

describe('Kafka metrics on /metrics', () => {
  it('a server without Kafka has no verdict_kafka_* series', async () => {
    const text = await metricsOf('plain');
    expect(text).toContain('verdict_server_agent_streams');
    expect(text.split('\n').filter((l) => l.includes('verdict_kafka_'))).toEqual([]);
  });

  it('a server with Kafka has them', async () => {
    const text = await metricsOf('replica', { kafka });
    for (const name of [
      'verdict_kafka_produced_messages_total',
      'verdict_kafka_projection_lag_messages',
      'verdict_kafka_delivery_changes_total',
      'verdict_kafka_events_cut_total',
    ])
      expect(text).toContain(`# TYPE ${name} `);
  }, 60_000);
});
