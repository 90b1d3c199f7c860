import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { until } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';

// One broken config.yaml commit: the proxy keeps deciding with the last good
// ci_access block, and `verdict kubeconfig` (a new process, which read no
// earlier commit) decides with the same one: the newest commit whose
// config.yaml validates. Real server, real agent, real kube-apiserver.

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/ops\n      default_namespace: default\n', agentKubeconfig: kube.kubeconfig });
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

describe('ci_access with an invalid config.yaml at the current commit', () => {
  it('verdict kubeconfig and the proxy both decide with the last good block', async () => {
    const token = env.jobToken({ project: 'shop/ops' });
    const before = await env.kubeconfig(token);
    expect((await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: before })).code).toBe(0);
    env.project.commit({ '.gitlab/agents/edge/config.yaml': 'ci_access:\n  projects:\n    - id: shop/ops\n      protected_branches_only: "yes please"\n' });
    // The proxy reads config.yaml when a request comes: it keeps serving the job, with the last good block.
    await until(
      async () => {
        const r = await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: before });
        expect(r.code, r.stderr).toBe(0);
        return env.logs.some((l) => l.msg === 'CI tunnel: invalid configuration; deciding with the ci_access block of the last good one') || undefined;
      },
      10_000,
      'the proxy to see the invalid commit',
    );
    // A job token issued after the broken commit gets its kubeconfig, with the last good entry's namespace.
    const after = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    const ns = await kube.kubectl(['config', 'view', '--minify', '-o', 'jsonpath={.contexts[0].context.namespace}'], { kubeconfig: after });
    expect(ns.stdout).toBe('default');
    const listed = await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: after });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('configmap/kube-root-ca.crt');
    // A project the last good block does not allow stays refused, by both.
    await expect(env.kubeconfig(env.jobToken({ project: 'shop/other' }))).rejects.toThrow(/project shop\/other is not in ci_access\.projects/);
  });

  it('warns of an invalid commit when it is pushed, not when a request first comes', async () => {
    // Narrowing and a typo in one commit: the last good (broader) block keeps deciding, so the warning must not wait for a job.
    const commit = env.project.commit({ '.gitlab/agents/edge/config.yaml': 'ci_access:\n  projects: []\ncilium: {hubble_relay_address: 7}\n' });
    await until(
      () =>
        env.logs.some((l) => l.msg === 'CI tunnel: invalid configuration; deciding with the ci_access block of the last good one' && l.commit_id === commit) ||
        undefined,
      10_000,
      'the warning without a request',
    );
    // Read through the agent API's poller of the project: its new commit is logged once, not by a second poller too.
    const newCommit = () => env.logs.filter((l) => l.msg === 'Config: new commit' && l.commit_id === commit);
    await until(() => newCommit().length > 0 || undefined, 10_000, 'the new commit logged');
    await new Promise((r) => setTimeout(r, 1000));
    expect(newCommit().map((l) => l.mod_name)).toEqual(['config']);
  });
});
