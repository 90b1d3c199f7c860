import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { killAll } from './processes.js';

/**
 * A private broker (scripts/kafka.sh) for the test file that calls this at
 * its top level, stopped after the file with the processes it spawned, and
 * `dir` removed. Returns the broker, for use inside tests.
 */
export function brokerPerFile(dir: string): () => Broker {
  let broker: Broker | undefined;
  beforeAll(() => {
    broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  }, 320_000);
  afterAll(async () => {
    await killAll();
    try {
      if (broker) stopBroker(broker);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
  return () => {
    if (!broker) throw new Error('the broker is not started yet: call brokerPerFile() at the top level of the test file');
    return broker;
  };
}
