import * as http from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobTokens } from '../../src/modules/ci-access/job-tokens.js';
import type { RunningServer } from '../../src/server/server.js';
import { agentConfigStream, startLocalServer } from '../helpers/config-stream.js';
import { capturingLogger } from '../helpers/logs.js';
import { ConfigProject, freePort, tempDir, until } from '../helpers/processes.js';

// After a move, ci_access decides with the config.yaml the agent runs: the old project at the commit the agent was
// sent, never the old project's newest commit. Someone with push access to the project the agent left must not grant
// CI access the agent never received. Real server, the agent's own configuration stream over a real tunnel.

const dir = tempDir('verdict-old-grants-');
const p1 = new ConfigProject(join(dir, 'p1'));
p1.commit({
  '.gitlab/agents/edge/config.yaml': 'ci_access:\n  projects:\n    - id: shop/app\n',
  // Not connected: its jobs pass or fail the ci_access check alone, which shows when the proxy has read a commit.
  '.gitlab/agents/probe/config.yaml': 'ci_access:\n  projects:\n    - id: shop/app\n',
});
const p2 = new ConfigProject(join(dir, 'p2'));
p2.commit({ 'README.md': 'the agent is not configured here yet\n' });
let server: RunningServer;
let port = 0;
let stream: Awaited<ReturnType<typeof agentConfigStream>>;
let edgeId = 0;
let probeId = 0;

beforeAll(async () => {
  port = await freePort();
  server = await startLocalServer(dir, capturingLogger('info').log, {
    config_poll_interval: 200,
    kubernetes_api: { listen: `127.0.0.1:${port}`, url_path_prefix: '/', url: undefined },
  } as never);
  const edge = server.agents.register('edge', p1.dir);
  edgeId = edge.agent.id;
  probeId = server.agents.register('probe', p1.dir).agent.id;
  stream = await agentConfigStream(server, edge.token, capturingLogger('info').log, 60_000);
});

afterAll(async () => {
  await stream?.close();
  await server?.close();
});

/**
 * The proxy's answer to a job's request through the agent. Neither agent has a CI tunnel here: a request that passed
 * the checks waits for a call of the agent, then gets a 503 saying it is not connected.
 */
function get(agentId: number, token: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/api/v1/namespaces', headers: { authorization: `Bearer ci:${agentId}:${token}` }, timeout: 10_000 },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (d) => (body += d))
          .on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => {
      req.destroy();
      reject(new Error('no answer within 10 s'));
    });
    req.on('error', reject);
  });
}

const passedChecks = (r: { status: number; body: string }) => r.status === 503 && r.body.includes('is not connected to this server');

describe('ci_access of an agent moved to another configuration project', () => {
  it('a commit to the project it left grants nothing: the config.yaml it runs decides', async () => {
    await until(() => stream.updates.length === 1 || undefined, 10_000, 'the first configuration');
    const jobs = new JobTokens(server.db);
    const evil = jobs.create({ ttlMs: 3600_000, project: 'evil/proj' }).token;
    const app = jobs.create({ ttlMs: 3600_000, project: 'shop/app' }).token;
    expect((await get(edgeId, evil)).status).toBe(403);

    server.agents.setConfigProject('edge', p2.dir);
    await until(() => (server.agents.configStatus('edge')?.invalid?.commit_id ? true : undefined), 10_000, 'the agent asking the new project');
    // Someone with push access to the project the agent left grants evil/proj, to both agents.
    p1.commit({
      '.gitlab/agents/edge/config.yaml': 'ci_access:\n  projects:\n    - id: evil/proj\n',
      '.gitlab/agents/probe/config.yaml': 'ci_access:\n  projects:\n    - id: evil/proj\n',
    });
    // The proxy reads a project's newest commit once per poll interval, for every agent alike: once the probe's
    // evil/proj job passes, the proxy has read that commit.
    await until(async () => passedChecks(await get(probeId, evil)) || undefined, 10_000, 'the proxy to read the new commit of the old project');

    const after = await get(edgeId, evil);
    expect(after.status).toBe(403);
    expect(JSON.parse(after.body).message).toContain('project evil/proj is not in ci_access.projects');
    // What the agent runs still allows shop/app, and the agent was sent nothing since.
    expect(passedChecks(await get(edgeId, app))).toBe(true);
    expect(stream.updates).toHaveLength(1);
  });
});
