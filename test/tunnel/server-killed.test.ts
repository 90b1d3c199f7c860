import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, tempDir } from '../helpers/processes.js';
import { prepareServer, ServerProc, spawnAgent } from './harness.js';

// A server killed with SIGKILL while a real agent streams to it over grpc://:
// the connection had worked, so the agent's log says the server went away and
// that it reconnects, not that the server may serve TLS there.

describe('the server an agent streams to is killed', () => {
  afterAll(killAll);

  it('logs that the server closed the connection and the agent reconnects, without the TLS hint', async () => {
    const dir = tempDir();
    const { data, tokenFile } = prepareServer(dir);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress('grpc'), tokenFile, join(dir, 'agent'));
    await agent.waitForLog((l) => l.msg === 'Config: applying new configuration', 20_000, 'the agent to get its configuration');
    await server.proc.kill('SIGKILL');
    const failed = await agent.waitForLog(
      (l) => /^(Alert stream to the server failed|Config: failed to get configuration)/.test(l.msg) && /Connection dropped/.test(String(l.error)),
      20_000,
      'the agent to log the dropped connection',
    );
    expect(failed.error).toBe(
      `localhost:${server.grpc} closed the connection (Connection dropped): the server restarted or crashed, or a proxy between closed it; the agent reconnects`,
    );
    for (const l of agent.logs) expect(String(l.error ?? '')).not.toMatch(/serves TLS there/);
  }, 60_000);
});
