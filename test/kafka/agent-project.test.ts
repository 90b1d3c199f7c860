// An agent moved to another configuration project on one replica is moved on
// every replica, through the tokens topic, in log order: a connected agent is
// served the new project by the replica it is connected to, and a replica that
// reads the topic from the start ends at the newest project, and so does a
// replica that stopped after writing a move and before reading it back. Servers
// in this process, on a real broker (scripts/kafka.sh).
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConfigStream, type ConfigUpdate } from '../../src/agent/tunnel/config-client.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { createKafkaClient, topicsOf } from '../../src/server/kafka/client.js';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger, type Logger } from '../../src/shared/log/logger.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { capturingLogger } from '../helpers/logs.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';

const dir = tempDir('verdict-kafka-agent-project-');
const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
let broker: Broker;
let kafka: KafkaConfig;
const servers: RunningServer[] = [];

async function replica(name: string, logger: Logger = log.child({ replica: name })): Promise<RunningServer> {
  const s = await startServer(
    { ...SERVER_DEFAULTS, data_dir: join(dir, name), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', config_poll_interval: 60_000, kafka },
    logger,
  );
  servers.push(s);
  return s;
}

beforeAll(() => {
  broker = startBroker(tempDir('verdict-kafka-state-'));
  kafka = kafkaConfigForBootstrap(broker.bootstrap, { topic_prefix: `t${randomUUID().slice(0, 8)}`, partitions: 1, session_timeout: '6s' });
}, 320_000);

afterAll(async () => {
  for (const s of servers.reverse()) await s.close().catch(() => undefined);
  if (broker) stopBroker(broker);
}, 90_000);

describe("an agent's configuration project across Kafka replicas", () => {
  const projects = ['first', 'second', 'third'].map((n) => new ConfigProject(join(dir, n)));
  const commits = projects.map((p, i) =>
    p.commit({ '.gitlab/agents/edge/config.yaml': `observability:\n  logging:\n    level: ${['info', 'debug', 'warn'][i]}\n` }),
  );

  it('is changed on A and served by B to the agent connected there, without a restart; a new replica replays to the newest', async () => {
    const a = await replica('a');
    const bLog = capturingLogger();
    const b = await replica('b', bLog.log);
    const admin = a.tokens.create('ops', 'admin').token;
    const { token } = a.agents.register('edge', projects[0]!.dir);
    await until(() => b.agents.authenticate(token) ?? undefined, 30_000, 'the agent token on replica B');

    const agentLog = capturingLogger();
    const updates: ConfigUpdate[] = [];
    const abort = new AbortController();
    const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${b.grpcAddress}`), token, log: agentLog.log });
    const loop = runConfigStream(tunnel, { initialMs: 60_000, maxMs: 60_000, jitter: false }, agentLog.log, abort.signal, async (u) => {
      updates.push(u);
    });
    try {
      await until(() => updates.length === 1 || undefined, 20_000, 'the first configuration, from B');
      expect(updates[0]!.commitId).toBe(commits[0]);

      const patch = (project: ConfigProject, on = a) =>
        fetch(`http://${on.httpAddress}/api/v1/admin/agents/edge`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ config_project: project.dir }),
        });
      expect((await patch(projects[1]!)).status).toBe(200);
      // B's poll interval and the agent's backoff are a minute: only the move, through the topic, brings this.
      await until(() => updates.length === 2 || undefined, 20_000, 'the configuration of the second project, from B');
      expect(updates[1]!.commitId).toBe(commits[1]);
      expect(b.agents.get('edge')?.config_project).toBe(projects[1]!.dir);

      // Moved again: every replica, and one reading the topic from its start, ends at the newest.
      expect((await patch(projects[2]!)).status).toBe(200);
      await until(() => updates.length === 3 || undefined, 20_000, 'the configuration of the third project, from B');
      expect(updates[2]!.commitId).toBe(commits[2]);
      const c = await replica('c');
      await until(() => (c.agents.get('edge')?.config_project === projects[2]!.dir ? true : undefined), 30_000, 'the newest project on replica C');
      expect(c.agents.authenticate(token)?.config_project).toBe(projects[2]!.dir);

      // B moves it back, after A's last move in the log: A applies it.
      expect((await patch(projects[0]!, b)).status).toBe(200);
      await until(() => (a.agents.get('edge')?.config_project === projects[0]!.dir ? true : undefined), 20_000, "B's move on replica A");
      // A as it would be had it stopped after writing its last move, before reading it back: the move waits to be
      // published, the tokens topic's reader has read none of it. Restarted, A reads its move in the topic, then B's
      // after it, and applies B's; sent again, its move would come after B's and undo it everywhere.
      const lastMove = bLog.logs.find((l) => l.msg.startsWith('Agents: changed the configuration project') && l.to === projects[2]!.dir);
      expect(lastMove?.changed_at).toEqual(expect.any(String));
      const group = topicsOf(kafka).tokensGroup(a.kafka!.replicaId);
      await a.close();
      const db = openServerDb(join(dir, 'a'));
      db.prepare('UPDATE agents SET config_project = ? WHERE name = ?').run(projects[2]!.dir, 'edge');
      db.prepare('INSERT INTO agent_project_changes (agent, config_project, changed_at) VALUES (?, ?, ?)').run('edge', projects[2]!.dir, lastMove!.changed_at);
      db.close();
      const kafkaAdmin = createKafkaClient(kafka, log).admin();
      await kafkaAdmin.connect();
      await kafkaAdmin.resetOffsets({ groupId: group, topic: topicsOf(kafka).tokens, earliest: true });
      await kafkaAdmin.disconnect();
      const restarted = await replica('a');
      await until(() => (restarted.agents.get('edge')?.config_project === projects[0]!.dir ? true : undefined), 30_000, "B's move on restarted A");
      // Written after anything the restarted A sent at start: once B has it, B has read that too.
      const marker = restarted.agents.createToken('edge', 'marker').info;
      await until(() => b.agents.listTokens('edge').find((t) => t.name === marker.name), 20_000, "restarted A's marker token on B");
      expect(b.agents.get('edge')?.config_project).toBe(projects[0]!.dir);
      expect(restarted.agents.get('edge')?.config_project).toBe(projects[0]!.dir);
      expect(agentLog.logs.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    } finally {
      abort.abort();
      await loop;
      await tunnel.close();
    }
  }, 180_000);
});
