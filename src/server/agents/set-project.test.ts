import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { ConfigProject, tempDir, until } from '../../../test/helpers/processes.js';
import { agentConfigStream, startLocalServer } from '../../../test/helpers/config-stream.js';
import type { ConfigUpdate } from '../../agent/tunnel/config-client.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { openServerDb } from '../store/server-db.js';
import type { RunningServer } from '../server.js';
import { AgentRegistry } from './agent-registry.js';

// An agent moved to another configuration project while it is connected gets
// that project's config.yaml without a restart, whether the move came over the
// admin API (this server) or from `verdict agents set-project` (another process
// writing the same database), and its log shows no error for it.

describe('moving a connected agent to another configuration project', () => {
  const dir = tempDir('verdict-set-project-');
  const projects = ['first', 'second', 'third'].map((n) => new ConfigProject(join(dir, n)));
  const commits = projects.map((p, i) =>
    p.commit({ '.gitlab/agents/edge/config.yaml': `observability:\n  logging:\n    level: ${['info', 'debug', 'warn'][i]}\n` }),
  );
  const agentLog = capturingLogger();
  let updates: ConfigUpdate[] = [];
  let server: RunningServer;
  let admin: string;
  let stream: Awaited<ReturnType<typeof agentConfigStream>>;

  beforeAll(async () => {
    server = await startLocalServer(dir, createRootLogger({ level: 'silent' }), { config_poll_interval: 60_000 });
    admin = server.tokens.create('ops', 'admin').token;
    const { token } = server.agents.register('edge', projects[0]!.dir);
    stream = await agentConfigStream(server, token, agentLog.log, 60_000);
    updates = stream.updates;
  });
  afterAll(async () => {
    await stream?.close();
    await server?.close();
  });

  it('is served the new project at once after PATCH /api/v1/admin/agents/{agent}, then after the CLI moves it', async () => {
    await until(() => updates.length === 1 || undefined, 10_000, 'the first configuration');
    expect(updates[0]!.commitId).toBe(commits[0]);

    const res = await fetch(`http://${server.httpAddress}/api/v1/admin/agents/edge`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config_project: projects[1]!.dir }),
    });
    expect(res.status).toBe(200);
    // The poll interval is a minute and the agent's backoff too: only the move itself can bring the new commit now.
    await until(() => updates.length === 2 || undefined, 10_000, 'the configuration of the second project');
    expect(updates[1]!.commitId).toBe(commits[1]);
    expect(updates[1]!.config).toMatchObject({ observability: { logging: { level: 'debug' } } });

    // The CLI writes the database from another process; the server notices within a second.
    const cli = openServerDb(join(dir, 'server'));
    try {
      await new AgentRegistry(cli).setConfigProjectChecked('edge', projects[2]!.dir);
    } finally {
      cli.close();
    }
    await until(() => updates.length === 3 || undefined, 10_000, 'the configuration of the third project');
    expect(updates[2]!.commitId).toBe(commits[2]);
    expect(server.agents.configStatus('edge')?.commit_id).toBe(commits[2]);
    expect(agentLog.logs.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
  });
});
