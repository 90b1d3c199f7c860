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

it('restart with delivery', async () => {
  const broker = startBroker(mkdtempSync(join(tmpdir(), 'vks-')));
  const log = createRootLogger({ level: 'info' });
  const cfg = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: 'r' + randomUUID().slice(0, 6), session_timeout: '6s' });
  const db = openServerDb(mkdtempSync(join(tmpdir(), 'vkd-')));
  const store = new AlertStore(db);
  const enq = new Set<string>();
  const r = await startKafkaReplica({ config: cfg, db, store, agents: new AgentRegistry(db), tokens: new FeedTokens(db), log, webhooks: { enqueueForAlerts: (a) => { for (const x of a) enq.add(x.fingerprint); return a.length; } } });
  let stop = false;
  const t0 = Date.now();
  let sent = 0;
  const loop = (async () => {
    let i = 0;
    while (!stop) {
      try {
        await r.sink.accept('edge', [{ id: randomUUID(), payload: falcoPayload({ fp: `f${i}` }) }]);
        i++; sent = i;
      } catch (e) {
        console.log(`+${Date.now() - t0} accept failed: ${(e as Error).message.slice(0, 80)}`);
      }
      await new Promise((res) => setTimeout(res, 20));
    }
  })();
  await new Promise((res) => setTimeout(res, 1000));
  console.log(`+${Date.now() - t0} restarting; sent ${sent} enq ${enq.size}`);
  await restartBroker(broker, 2000);
  console.log(`+${Date.now() - t0} restarted`);
  for (let k = 0; k < 12; k++) {
    await new Promise((res) => setTimeout(res, 5000));
    console.log(`+${Date.now() - t0} sent ${sent} enq ${enq.size}`);
  }
  stop = true;
  await loop;
  await r.close();
  stopBroker(broker);
}, 200_000);
