import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConfigUpdate } from '../../src/agent/tunnel/config-client.js';
import type { RunningServer } from '../../src/server/server.js';
import { agentConfigStream, startLocalServer } from '../helpers/config-stream.js';
import { capturingLogger } from '../helpers/logs.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';

// An agent moved to a configuration project that has no commit yet, then no
// config.yaml for it, keeps running its last configuration and is sent the new
// project's as soon as it is committed: the server polls the project at the
// poll interval, as for the agent's first project, and the agent never falls
// into its reconnect backoff (here a minute) for it. Server and agent each say
// once what is going on and what to do.

describe('an agent moved to a configuration project without its config.yaml yet', () => {
  const dir = tempDir('verdict-move-empty-');
  const first = new ConfigProject(join(dir, 'first'));
  const firstHead = first.commit({ '.gitlab/agents/edge/config.yaml': 'observability:\n  logging:\n    level: info\n' });
  // git init, no commit yet.
  const empty = new ConfigProject(join(dir, 'empty'));
  const serverLog = capturingLogger('info');
  const agentLog = capturingLogger('info');
  let updates: ConfigUpdate[] = [];
  let server: RunningServer;
  let admin: string;
  let stream: Awaited<ReturnType<typeof agentConfigStream>>;

  beforeAll(async () => {
    server = await startLocalServer(dir, serverLog.log, { config_poll_interval: 200 });
    admin = server.tokens.create('ops', 'admin').token;
    const { token } = server.agents.register('edge', first.dir);
    stream = await agentConfigStream(server, token, agentLog.log, 60_000);
    updates = stream.updates;
  });
  afterAll(async () => {
    await stream?.close();
    await server?.close();
  });

  it("keeps the last configuration, and applies the new project's as soon as a valid config.yaml is committed there", async () => {
    await until(() => updates.length === 1 || undefined, 10_000, 'the first configuration');
    expect(updates[0]!.commitId).toBe(firstHead);

    const res = await fetch(`http://${server.httpAddress}/api/v1/admin/agents/edge`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config_project: empty.dir }),
    });
    expect(res.status).toBe(200);
    const noCommit =
      'Config: the configuration project has no commit the server can read yet; keeping the last good configuration until it has one with config.yaml';
    await until(() => agentLog.logs.some((l) => l.msg === noCommit) || undefined, 10_000, 'the agent saying the new project has no commit yet');

    // A commit without the agent's config.yaml: still nothing to apply.
    const readme = empty.commit({ 'README.md': 'the agent is not configured here yet\n' });
    await until(
      () => agentLog.logs.some((l) => l.commit_id === readme && l.level === 'error') || undefined,
      10_000,
      "the agent saying the new project's commit has no config.yaml for it",
    );
    expect(updates).toHaveLength(1);

    // The poll interval is 200 ms and the agent's backoff a minute: only the open stream brings this in time.
    const configured = empty.commit({ '.gitlab/agents/edge/config.yaml': 'observability:\n  logging:\n    level: debug\n' });
    await until(() => updates.length === 2 || undefined, 10_000, 'the configuration of the new project');
    expect(updates[1]!.commitId).toBe(configured);
    expect(updates[1]!.config).toMatchObject({ observability: { logging: { level: 'debug' } } });
    expect(server.agents.configStatus('edge')?.commit_id).toBe(configured);

    // Said once each, not at every poll or reconnect.
    expect(agentLog.logs.filter((l) => l.msg === noCommit)).toHaveLength(1);
    expect(agentLog.logs.filter((l) => l.msg === 'Config: failed to get configuration from the server')).toEqual([]);
    const serverSaid = serverLog.logs.filter(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('Config: no commit of the configuration project can be read yet'),
    );
    expect(serverSaid.map((l) => [l.level, l.agent_name, l.config_project, l.msg])).toEqual([
      [
        'warn',
        'edge',
        empty.dir,
        'Config: no commit of the configuration project can be read yet; the agent keeps running its last configuration and is sent the new one once config.yaml is committed there',
      ],
    ]);
  });
});
