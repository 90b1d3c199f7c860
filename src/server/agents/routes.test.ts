import { renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigProject, gitCalls, tempDir } from '../../../test/helpers/processes.js';
import { SERVER_DEFAULTS } from '../../shared/config/server-config.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { loadAgentConfiguration } from '../config/agent-config-loader.js';
import { type RunningServer, startServer } from '../server.js';

// The agents API names the modules of the configuration the server last sent
// an agent, read from its config.yaml at that commit as the configuration
// stream read it: one read of a commit for both.

describe('GET /api/v1/agents/:name', () => {
  const dir = tempDir('verdict-agent-routes-');
  const project = new ConfigProject(join(dir, 'config'));
  let server: RunningServer;
  let token: string;

  beforeAll(async () => {
    const settings = { ...SERVER_DEFAULTS, data_dir: join(dir, 'server'), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0' };
    server = await startServer(settings, createRootLogger({ level: 'silent' }));
    token = server.tokens.create('reader', 'read').token;
  });
  afterAll(() => server?.close());

  const modules = async (): Promise<string[]> => {
    const res = await fetch(`http://${server.httpAddress}/api/v1/agents/edge`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { modules: string[] }).modules;
  };

  it("names the modules of the commit sent, with the configuration stream's read; a read git failed at is tried again", async () => {
    const commit = project.commit({ '.gitlab/agents/edge/config.yaml': 'ci_access: {}\ngitops: {}\n' });
    server.agents.register('edge', project.dir);
    server.agents.recordConfig('edge', commit, []);
    const away = `${project.dir}-away`;
    renameSync(project.dir, away);
    try {
      expect(await modules()).toEqual([]);
    } finally {
      renameSync(away, project.dir);
    }
    expect(await modules()).toEqual(['gitops', 'ci_access']);

    const next = project.commit({ '.gitlab/agents/edge/config.yaml': 'gitops: {}\n' });
    const reads = await gitCalls(async () => {
      await loadAgentConfiguration(project.dir, 'edge', next);
      server.agents.recordConfig('edge', next, []);
      expect(await modules()).toEqual(['gitops']);
    });
    expect(reads.filter((c) => c.includes('config.yaml'))).toHaveLength(2); // ls-tree and cat-file, once
  });
});
