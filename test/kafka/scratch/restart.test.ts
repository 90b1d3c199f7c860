import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'vitest';
import { AgentRegistry } from '../../../src/server/agents/agent-registry.js';
import { FeedTokens } from '../../../src/server/auth/feed-tokens.js';
import { startKafkaReplica } from '../../../src/server/kafka/replica.js';
import { restartBroker, startBroker, stopBroker } from '../../../src/server/kafka/testing.js';
import { AlertStore } from '../../../src/server/store/alert-store.js';
import { openServerDb } from '../../../src/server/store/server-db.js';
import { falcoPayload } from '../../../src/server/store/test-payloads.js';
import { kafkaConfigForBootstrap } from '../../../src/shared/config/kafka-config.js';
import { createRootLogger } from '../../../src/shared/log/logger.js';

it('restart', async () => {
  const broker = startBroker(mkdtempSync(join(tmpdir(), 'vks-')));
  const log = createRootLogger({ level: 'warn' });
  const cfg = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: 'r' + randomUUID().slice(0, 6), session_timeout: '6s' });
  const db = openServerDb(mkdtempSync(join(tmpdir(), 'vkd-')));
  const store = new AlertStore(db);
  const r = await startKafkaReplica({ config: cfg, db, store, agents: new AgentRegistry(db), tokens: new FeedTokens(db), log });
  let stop = false;
  const t0 = Date.now();
  const loop = (async () => {
    let i = 0;
    while (!stop) {
      const s = Date.now();
      try {
        await r.sink.accept('edge', [{ id: randomUUID(), payload: falcoPayload({ fp: `f${i++}` }) }]);
        const d = Date.now() - s;
        if (d > 200) console.log(`+${Date.now() - t0} accept took ${d} ms`);
      } catch (e) {
        console.log(`+${Date.now() - t0} accept failed after ${Date.now() - s} ms: ${(e as Error).message}`);
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  await new Promise((res) => setTimeout(res, 1000));
  console.log(`+${Date.now() - t0} restarting`);
  await restartBroker(broker, 2000);
  console.log(`+${Date.now() - t0} restarted`);
  await new Promise((res) => setTimeout(res, 30000));
  stop = true;
  await loop;
  console.log('caught up', await r.waitCaughtUp(20000));
  await r.close();
  stopBroker(broker);
}, 200_000);
