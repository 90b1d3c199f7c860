import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigProject, freePort, killAll, tempDir, verdictSync } from '../helpers/processes.js';
import { AGENT, ServerProc, spawnAgent } from './harness.js';

// Configuration push over the WebSocket transport (the gRPC one is covered by
// test/e2e/pipeline.test.ts): a changed block restarts its module only, and an
// invalid commit is reported to the agent (file, path, line) and in the
// server's log while the agent keeps its last good configuration.

function config(falcoPort: number, falcoDedup: string): string {
  return `cilium:
  hubble_relay_address: 127.0.0.1:1
  reconnect:
    initial_backoff: 1s
    max_backoff: 1s
falco:
  http:
    listen: 127.0.0.1:${falcoPort}
  dedup_window: ${falcoDedup}
`;
}

describe('configuration push over ws://', () => {
  afterAll(killAll);

  it('restarts only the module whose block changed, and keeps the last good configuration on an invalid commit', async () => {
    const dir = tempDir();
    const project = new ConfigProject(join(dir, 'project'));
    const falcoPort = await freePort();
    project.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: config(falcoPort, '5s') });
    const data = join(dir, 'server');
    const token = verdictSync(['agents', 'register', AGENT, '--config-project', project.dir, '--data-dir', data]).trim();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'token'), token);
    const server = await ServerProc.start(data);
    const agent = spawnAgent(server.kasAddress('ws'), join(dir, 'token'), join(dir, 'agent'));
    await agent.waitForLog((l) => l.msg === 'Starting module' && l.mod_name === 'falco');
    await agent.waitForLog((l) => l.msg === 'Starting module' && l.mod_name === 'cilium');

    const second = project.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: config(falcoPort, '7s') }, 'falco only');
    await agent.waitForLog((l) => l.msg === 'Config: applying new configuration' && l.commit_id === second, 15_000);
    const restart = await agent.waitForLog((l) => l.msg === 'Restarting module: its configuration changed');
    expect(restart.mod_name).toBe('falco');
    await new Promise((r) => setTimeout(r, 500));
    const restarts = agent.logs.filter((l) => l.msg === 'Restarting module: its configuration changed').map((l) => l.mod_name);
    expect(restarts).toEqual(['falco']);

    const broken = project.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: `${config(falcoPort, '7s')}  minimum_priority: Loud\n` }, 'broken');
    const err = await agent.waitForLog((l) => l.msg === 'Config: the new configuration is invalid; keeping the last good configuration', 15_000);
    expect(String(err.error)).toMatch(
      new RegExp(`invalid configuration at commit ${broken.slice(0, 12)}: \\.gitlab/agents/${AGENT}/config\\.yaml:10: falco\\.minimum_priority: `),
    );
    const logged = await server.proc.waitForLog((l) => l.msg.startsWith('Config: invalid configuration') && l.commit_id === broken);
    expect(String(logged.error)).toContain('falco.minimum_priority');
    expect(agent.logs.filter((l) => l.msg === 'Restarting module: its configuration changed')).toHaveLength(1);
  });
});
