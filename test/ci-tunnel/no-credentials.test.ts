import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, until } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';

// An agent with no Kubernetes credentials (not in a pod, no --kubeconfig, no
// KUBECONFIG, no ~/.kube/config): its CI tunnel says what to do for the CI
// tunnel (not for cilium), keeps its calls to the server, and a CI job is told
// that the agent cannot reach its cluster's API server, not that it is not
// connected. Real server, real agent.

let env: CiEnv;
const saved = { HOME: process.env.HOME, KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST };

beforeAll(async () => {
  process.env.HOME = tempDir('verdict-ci-home-');
  delete process.env.KUBECONFIG;
  delete process.env.KUBERNETES_SERVICE_HOST;
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/ops\n', agentName: 'qa' });
}, 60_000);

afterAll(async () => {
  await env?.stop();
  for (const [k, v] of Object.entries(saved))
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
});

describe('CI tunnel of an agent without Kubernetes credentials', () => {
  it("logs the CI tunnel's advice, and answers jobs that it cannot reach its cluster's API server", async () => {
    const line = await until(() => env.logs.find((l) => String(l.msg).startsWith('CI tunnel: no Kubernetes credentials')), 10_000, 'the log line');
    expect(String(line.error)).toContain('no Kubernetes credentials');
    expect(String(line.error)).toContain('pass --kubeconfig');
    expect(String(line.error)).not.toContain('cilium');
    const token = env.jobToken({ project: 'shop/ops' });
    const r = await env.get('/api/v1/namespaces/default/configmaps', { authorization: `Bearer ci:${env.agentId}:${token}` });
    expect(r.status, r.body).toBe(502);
    const message = (JSON.parse(r.body) as { message: string }).message;
    expect(message).toMatch(/^Verdict agent: cannot reach this cluster's Kubernetes API server: no Kubernetes credentials/);
    expect(message).not.toContain('not connected');
  });
});
