// An agent moved to another configuration project on one replica is moved on
// every replica, through the tokens topic, in log order: a connected agent is
// served the new project by the replica it is connected to, and a replica that
// reads the topic from the start ends at the newest project. Servers in this
// process, on a real broker (scripts/kafka.sh).
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConfigStream, type ConfigUpdate } from '../../src/agent/tunnel/config-client.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { kafkaConfigForBootstrap, type KafkaConfig } from '../../src/shared/config/kafka-config.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { capturingLogger } from '../helpers/logs.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';

const dir = tempDir('verdict-kafka-agent-project-');
const log = createRootLogger({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });
let broker: Broker;
let kafka: KafkaConfig;
const servers: RunningServer[] = [];

async function replica(name: string): Promise<RunningServer> {
  const s = await startServer(
    { ...SERVER_DEFAULTS, data_dir: join(dir, name), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', config_poll_interval: 60_000, kafka },
    log.child({ replica: name }),
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
    const b = await replica('b');
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

      const patch = (project: ConfigProject) =>
        fetch(`http://${a.httpAddress}/api/v1/admin/agents/edge`, {
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
      // A, which wrote both moves, read them back in order and stays at the newest.
      expect(a.agents.get('edge')?.config_project).toBe(projects[2]!.dir);
      expect(agentLog.logs.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
    } finally {
      abort.abort();
      await loop;
      await tunnel.close();
    }
  }, 180_000);
});
