import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { ConfigProject, until } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';

// A CI job is allowed by the ci_access block of the config.yaml the agent
// runs, as GitOps serves the configuration project's manifests from it: an
// agent moved to a project without its config.yaml yet keeps running its last
// configuration (and its CI tunnel), and its jobs keep their access until the
// new project's config.yaml reaches it. Then that one decides.
// Real server, real agent with the CI tunnel, real kube-apiserver.

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/app\n', agentKubeconfig: kube.kubeconfig });
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

describe('the CI tunnel of an agent moved to another configuration project', () => {
  it("decides with the config.yaml the agent runs: the old project's until the new one's reaches the agent", async () => {
    const app = env.jobToken({ project: 'shop/app' });
    const other = env.jobToken({ project: 'shop/other' });
    const get = (job: string) => env.get('/api/v1/namespaces/default/configmaps', { authorization: `Bearer ci:${env.agentId}:${job}` });
    expect((await get(app)).status).toBe(200);

    const moved = new ConfigProject(join(env.dir, 'moved'));
    const readme = moved.commit({ 'README.md': 'the agent is not configured here yet\n' });
    env.server.agents.setConfigProject('edge', moved.dir);
    // The agent asked the new project for its configuration and was told it has none: it runs the first one still.
    await until(() => env.server.agents.configStatus('edge')?.invalid?.commit_id === readme || undefined, 10_000, 'the agent asking the new project');
    const still = await get(app);
    expect([still.status, still.body]).toEqual([200, expect.stringContaining('"kind":"ConfigMapList"')]);
    expect((await get(other)).status).toBe(403);

    const configured = moved.commit({ '.gitlab/agents/edge/config.yaml': 'ci_access:\n  projects:\n    - id: shop/other\n' });
    await until(() => env.server.agents.configStatus('edge')?.commit_id === configured || undefined, 10_000, "the new project's configuration sent");
    const now = await until(async () => ((await get(other)).status === 200 ? true : undefined), 10_000, 'shop/other allowed by the new config.yaml');
    expect(now).toBe(true);
    const refused = await get(app);
    expect(refused.status).toBe(403);
    expect(JSON.parse(refused.body).message).toContain('project shop/app is not in ci_access.projects');
  });
});
