import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { Admin, Kafka } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigProject, tempDir, until } from '../../../test/helpers/processes.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../shared/config/kafka-config.js';
import { createRootLogger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { AgentRegistry } from '../agents/agent-registry.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { openServerDb } from '../store/server-db.js';
import { createKafkaClient, ensureTopics, topicsOf } from './client.js';
import { migrateKafka } from './db.js';
import { LogWriter } from './producer.js';
import { type Broker, startBroker, stopBroker } from './testing.js';
import { TokenSync } from './tokens.js';

// Moves of an agent to another configuration project on the tokens topic, with
// two token syncs that publish only when told (a long interval): what a
// replica does with a move from another replica while its own is not yet
// published, or published and not yet acknowledged. Real broker (scripts/kafka.sh).

const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
const dir = tempDir('verdict-kafka-tokens-');
let broker: Broker;
let cfg: KafkaConfig;
let kafka: Kafka;
let admin: Admin;
let writer: LogWriter;
const syncs: TokenSync[] = [];

interface Replica {
  db: DB;
  agents: AgentRegistry;
  sync: TokenSync;
}

/**
 * The shared writer, with appends that, once armed by hold(), are written to the topic but resolve only on release():
 * an append whose acknowledgement is slow (a busy producer, a broker hiccup).
 */
function heldAppends(w: LogWriter) {
  let held: { written: () => void; released: Promise<void> } | undefined;
  const writer = Object.assign(Object.create(w) as LogWriter, {
    append: async (messages: Parameters<LogWriter['append']>[0]) => {
      const appended = await w.append(messages);
      const h = held;
      held = undefined;
      if (h) {
        h.written();
        await h.released;
      }
      return appended;
    },
  });
  const hold = () => {
    let written!: () => void;
    let release!: () => void;
    const wasWritten = new Promise<void>((r) => {
      written = r;
    });
    held = { written, released: new Promise<void>((r) => (release = r)) };
    return { written: wasWritten, release };
  };
  return { writer, hold };
}

function projectsFor(agent: string, names: string[]): string[] {
  return names.map((n) => {
    const p = new ConfigProject(join(dir, `${agent}-${n}`));
    p.commit({ [`.gitlab/agents/${agent}/config.yaml`]: '{}\n' });
    return p.dir;
  });
}

async function replica(name: string, w: LogWriter = writer): Promise<Replica> {
  const db = openServerDb(join(dir, name));
  migrateKafka(db);
  const agents = new AgentRegistry(db);
  const topics = topicsOf(cfg);
  const sync = new TokenSync({
    kafka,
    cfg,
    db,
    agents,
    tokens: new FeedTokens(db),
    writer: w,
    topic: topics.tokens,
    groupId: topics.tokensGroup(name),
    log,
    intervalMs: 3_600_000,
  });
  syncs.push(sync);
  await sync.join();
  return { db, agents, sync };
}

beforeAll(async () => {
  broker = startBroker(tempDir('verdict-kafka-state-'));
  cfg = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: `t${randomUUID().slice(0, 8)}`, partitions: 1, session_timeout: '6s' });
  kafka = createKafkaClient(cfg, log);
  admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, cfg, log);
  writer = new LogWriter(kafka, cfg, log);
  await writer.start();
}, 320_000);

afterAll(async () => {
  for (const s of syncs) await s.stop();
  await writer?.close();
  await admin?.disconnect();
  if (broker) stopBroker(broker);
}, 90_000);

describe('agent_project messages on the tokens topic', () => {
  it('leave a move not yet published here in place; once published, it wins on every replica', async () => {
    const [first, second, third] = ['first', 'second', 'third'].map((n) => {
      const p = new ConfigProject(join(dir, n));
      p.commit({ '.gitlab/agents/edge/config.yaml': '{}\n' });
      return p.dir;
    }) as [string, string, string];
    const a = await replica('a');
    const b = await replica('b');
    a.agents.register('edge', first);
    await a.sync.publish();
    await until(() => b.agents.get('edge'), 20_000, 'the agent on B');

    // B moves the agent and has not published it; A moves it too and publishes.
    b.agents.setConfigProject('edge', third);
    a.agents.setConfigProject('edge', second);
    await a.sync.publish();
    // Written after A's move, in the one partition: once B has this token, it has read the move.
    const { info } = a.agents.createToken('edge', 'marker');
    await a.sync.publish();
    await until(() => b.agents.listTokens('edge').find((t) => t.name === info.name), 20_000, "A's marker token on B");
    expect(b.agents.get('edge')?.config_project).toBe(third);
    expect(a.agents.get('edge')?.config_project).toBe(second);

    // B's move is written after A's: both end at it.
    await b.sync.publish();
    await until(() => a.agents.get('edge')?.config_project === third || undefined, 20_000, "B's move on A");
    expect(b.agents.get('edge')?.config_project).toBe(third);
    // A replica reading the topic from its start ends there too.
    const c = await replica('c');
    await until(() => c.agents.get('edge')?.config_project === third || undefined, 20_000, 'the newest move on C');
  }, 120_000);

  it("applies a move read after this replica's own, even while its own append has not returned", async () => {
    const [first, second, third] = projectsFor('lag', ['first', 'second', 'third']) as [string, string, string];
    const slow = heldAppends(writer);
    const a = await replica('lag-a', slow.writer);
    const b = await replica('lag-b');
    a.agents.register('lag', first);
    await a.sync.publish();
    await until(() => b.agents.get('lag'), 20_000, 'the agent on B');

    // A's move is in the log, its append not acknowledged yet; B's move is written after it.
    const held = slow.hold();
    a.agents.setConfigProject('lag', second);
    const publishing = a.sync.publish();
    await held.written;
    b.agents.setConfigProject('lag', third);
    await b.sync.publish();
    const { info } = b.agents.createToken('lag', 'marker');
    await b.sync.publish();
    await until(() => a.agents.listTokens('lag').find((t) => t.name === info.name), 20_000, "B's marker token on A");
    expect(a.agents.get('lag')?.config_project).toBe(third);

    held.release();
    await publishing;
    await a.sync.publish();
    expect(a.agents.get('lag')?.config_project).toBe(third);
    expect(b.agents.get('lag')?.config_project).toBe(third);
    // A did not send its move again after B's: a replica reading the topic from its start ends at B's too.
    const { info: last } = a.agents.createToken('lag', 'last');
    await a.sync.publish();
    const c = await replica('lag-c');
    await until(() => c.agents.listTokens('lag').find((t) => t.name === last.name), 20_000, "A's last token on C");
    expect(c.agents.get('lag')?.config_project).toBe(third);
  }, 120_000);

  it('drops a move held since a crash when it reads a newer one made elsewhere meanwhile, instead of undoing it', async () => {
    const [first, second, third] = projectsFor('held', ['first', 'second', 'third']) as [string, string, string];
    const a = await replica('held-a');
    a.agents.register('held', first);
    await a.sync.publish();
    const d1 = await replica('held-d');
    await until(() => d1.agents.get('held'), 20_000, 'the agent on D');
    // D moves the agent and stops before publishing it (a crash); later A moves it elsewhere.
    d1.agents.setConfigProject('held', second);
    await d1.sync.stop();
    await new Promise((r) => setTimeout(r, 5));
    a.agents.setConfigProject('held', third);
    await a.sync.publish();

    // D comes back holding its old move, reads A's newer one while it catches up, and takes it.
    const d = await replica('held-d');
    await until(() => d.agents.get('held')?.config_project === third || undefined, 20_000, "A's newer move on D");
    await d.sync.publish();
    const { info } = d.agents.createToken('held', 'marker');
    await d.sync.publish();
    await until(() => a.agents.listTokens('held').find((t) => t.name === info.name), 20_000, "D's marker token on A");
    expect(a.agents.get('held')?.config_project).toBe(third);
    expect(d.agents.get('held')?.config_project).toBe(third);
  }, 120_000);
});
