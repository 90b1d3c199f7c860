import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { REPO, tempDir, until } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';

// The agent's RBAC for the CI tunnel as shipped in deploy/agent/agent.yaml,
// against the real API server: the agent runs with the verdict-agent
// ServiceAccount's token, which may impersonate and do nothing else, and CI
// jobs get exactly what RBAC grants the identity they are impersonated as.

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  const applied = await kube.kubectl(['apply', '-f', join(REPO, 'deploy/agent/agent.yaml')]);
  expect(applied.code, applied.stderr).toBe(0);
  const token = (await kube.kubectl(['create', 'token', 'verdict-agent', '-n', 'verdict-agent', '--duration=1h'])).stdout.trim();
  const dir = tempDir('verdict-ci-rbac-');
  const kubeconfig = join(dir, 'agent-kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: k, cluster: {server: "${kube.server}", certificate-authority: "${kube.caFile}"}}]\nusers: [{name: sa, user: {token: "${token}"}}]\ncontexts: [{name: k, context: {cluster: k, user: sa}}]\ncurrent-context: k\n`,
  );
  const config = `ci_access:
  projects:
    - id: shop/app
      default_namespace: default
      access_as: {ci_job: {}}
    - id: shop/deployer
      default_namespace: default
      access_as:
        impersonate: {username: deployer, uid: "1000", groups: [deployers]}
    - id: shop/plain
      default_namespace: default
`;
  env = await startCiEnv({ configYaml: config, agentKubeconfig: kubeconfig });
  await kube.kubectl(['create', 'rolebinding', 'app-view', '-n', 'default', '--clusterrole=view', '--group=gitlab:project:shop/app']);
  await kube.kubectl(['create', 'rolebinding', 'deployers-view', '-n', 'default', '--clusterrole=view', '--group=deployers']);
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

describe("the agent's impersonate role (deploy/agent/agent.yaml)", () => {
  it('lets no job impersonate through the tunnel: --as system:masters is refused for every access_as, and nothing is created', async () => {
    // The configuration project's own jobs are allowed without an entry (access_as agent).
    for (const project of ['shop/plain', 'shop/app', 'shop/deployer', 'infra']) {
      const file = await env.kubeconfig(env.jobToken({ project }));
      const r = await kube.kubectl(
        [
          'create',
          'clusterrolebinding',
          `pwn-${project.replace('/', '-')}`,
          '--clusterrole=cluster-admin',
          '--user=attacker',
          '--as=anyone',
          '--as-group=system:masters',
        ],
        { kubeconfig: file },
      );
      expect(r.code, project).not.toBe(0);
      expect(r.stderr).toContain('Verdict server: impersonation through the CI tunnel is not allowed');
      expect(r.stderr).toContain('access_as: {impersonate:');
    }
    // Impersonate-Extra-* or Impersonate-Uid alone, in any case, are refused too.
    const token = env.jobToken({ project: 'shop/plain' });
    for (const h of ['Impersonate-Extra-Scopes', 'IMPERSONATE-UID', 'impersonate-user']) {
      const r = await env.get('/api/v1/namespaces/default/configmaps', { authorization: `Bearer ci:${env.agentId}:${token}`, [h]: 'x' });
      expect(r.status, h).toBe(403);
      expect(JSON.parse(r.body).message).toContain('impersonation through the CI tunnel is not allowed');
    }
    const bindings = await kube.kubectl(['get', 'clusterrolebindings', '-o', 'name']);
    expect(bindings.stdout).not.toContain('pwn');
  });

  it('is enough: ci_job (user, groups, every extra key) and impersonate (with uid) reach the API server as the job', async () => {
    const app = await env.kubeconfig(env.jobToken({ project: 'shop/app', environment: 'production' }));
    const listed = await until(
      async () => {
        const r = await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: app });
        return r.code === 0 ? r : undefined;
      },
      10_000,
      'the job to list configmaps',
    );
    expect(listed.stdout).toContain('configmap/kube-root-ca.crt');
    // The configuration project as GitLab names projects, not the server's path to it (env.ts: <tmp>/infra, no projects_dir).
    const extra = await kube.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.extra.agent\\.gitlab\\.com/config_project_id}'], { kubeconfig: app });
    expect(extra.stdout, extra.stderr).toBe('["infra"]');
    const deployer = await env.kubeconfig(env.jobToken({ project: 'shop/deployer' }));
    const who = await kube.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username} {.status.userInfo.uid}'], { kubeconfig: deployer });
    expect(who.stdout).toBe('deployer 1000');
    expect((await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: deployer })).code).toBe(0);
  });

  it("gives a job with access_as agent exactly what the ServiceAccount may: GitOps's grant while it is bound, nothing once it is not", async () => {
    const plain = await env.kubeconfig(env.jobToken({ project: 'shop/plain' }));
    const granted = await kube.kubectl(['get', 'configmaps', '-o', 'name'], { kubeconfig: plain });
    expect(granted.code, granted.stderr).toBe(0);
    // Without GitOps (docs/gitops.md: drop the binding), the agent keeps only what the policy watch and the impersonation need.
    await kube.kubectl(['delete', 'clusterrolebinding', 'verdict-agent-gitops']);
    const r = await until(
      async () => {
        const x = await kube.kubectl(['get', 'configmaps'], { kubeconfig: plain });
        return x.code !== 0 ? x : undefined;
      },
      10_000,
      'the list to be refused',
    );
    expect(r.stderr).toContain('User "system:serviceaccount:verdict-agent:verdict-agent" cannot list resource "configmaps"');
  });

  it('is needed: without the binding the API server refuses the impersonation, and kubectl shows its message', async () => {
    await kube.kubectl(['delete', 'clusterrolebinding', 'verdict-agent-impersonate']);
    const app = await env.kubeconfig(env.jobToken({ project: 'shop/app' }));
    const r = await until(
      async () => {
        const x = await kube.kubectl(['get', 'configmaps'], { kubeconfig: app });
        return x.code !== 0 ? x : undefined;
      },
      10_000,
      'the impersonation to be refused',
    );
    expect(r.stderr).toContain('User "system:serviceaccount:verdict-agent:verdict-agent" cannot impersonate resource "users" in API group ""');
  });
});
