import type { IncomingMessage } from 'node:http';
import * as https from 'node:https';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobTokens } from '../../src/modules/ci-access/job-tokens.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { until } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';
import { watchConfigMaps } from './watch.js';

// The CI/CD tunnel end to end: the real kubectl, with the KUBECONFIG
// `verdict kubeconfig` makes for a job token, talks to the server's
// Kubernetes API proxy; the request goes through the agent's tunnel to a real
// kube-apiserver, impersonating per ci_access.access_as.

const CONFIG = `ci_access:
  projects:
    - id: shop/app
      default_namespace: ci
      access_as:
        ci_job: {}
    - id: shop/ops
      default_namespace: ci
    - id: shop/deployer
      access_as:
        impersonate:
          username: deployer
          groups: [deployers]
  groups:
    - id: prod
      environments: [production, review/*]
      protected_branches_only: true
`;

let kube: Kube;
let env: CiEnv;

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: CONFIG, agentKubeconfig: kube.kubeconfig });
  await kube.kubectl(['create', 'namespace', 'ci']);
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

const asJob = (kubeconfig: string, args: string[], input?: string) => kube.kubectl(args, { kubeconfig, ...(input ? { input } : {}) });

describe('CI tunnel with kubectl', () => {
  it('verdict kubeconfig: one cluster (the proxy), user agent:<id> with ci:<id>:<token>, context <project>:<agent> in default_namespace', async () => {
    const token = env.jobToken({ project: 'shop/ops' });
    const file = await env.kubeconfig(token);
    const view = await kube.kubectl(['config', 'view', '--raw', '-o', 'json'], { kubeconfig: file });
    const cfg = JSON.parse(view.stdout) as {
      clusters: { cluster: { server: string } }[];
      users: { name: string; user: { token: string } }[];
      contexts: { name: string; context: { namespace: string; user: string } }[];
      'current-context': string;
    };
    expect(cfg.clusters.map((c) => c.cluster.server)).toEqual([env.proxyUrl]);
    expect(cfg.users).toEqual([{ name: `agent:${env.agentId}`, user: { token: `ci:${env.agentId}:${token}` } }]);
    expect(cfg.contexts).toEqual([{ name: 'infra:edge', context: { cluster: 'verdict', user: `agent:${env.agentId}`, namespace: 'ci' } }]);
    expect(cfg['current-context']).toBe('infra:edge');
  });

  it('access_as agent: get, apply and delete through the tunnel', async () => {
    const file = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    const cm = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'through-tunnel' }, data: { a: '1' } });
    const applied = await asJob(file, ['apply', '-f', '-'], cm);
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain('configmap/through-tunnel created');
    const got = await asJob(file, ['get', 'configmap', 'through-tunnel', '-o', 'jsonpath={.data.a}']);
    expect(got.stdout).toBe('1');
    // The default namespace came from the context: the admin sees it in "ci".
    expect((await kube.kubectl(['get', 'configmap', 'through-tunnel', '-n', 'ci', '-o', 'name'])).stdout.trim()).toBe('configmap/through-tunnel');
    const deleted = await asJob(file, ['delete', 'configmap', 'through-tunnel']);
    expect(deleted.stdout).toContain('deleted');
    expect((await asJob(file, ['get', 'configmap', 'through-tunnel'])).stderr).toMatch(/NotFound|not found/);
  });

  it('access_as ci_job: forbidden for the impersonated job until a RoleBinding names its project group, allowed after', async () => {
    const file = await env.kubeconfig(env.jobToken({ project: 'shop/app' }));
    const before = await asJob(file, ['get', 'configmaps']);
    expect(before.code).not.toBe(0);
    expect(before.stderr).toMatch(/User "gitlab:ci_job:\d+" cannot list resource "configmaps" in API group "" in the namespace "ci"/);
    const rb = await kube.kubectl(['create', 'rolebinding', 'ci-app-view', '-n', 'ci', '--clusterrole=view', '--group=gitlab:project:shop/app']);
    expect(rb.code, rb.stderr).toBe(0);
    const after = await until(
      async () => {
        const r = await asJob(file, ['get', 'configmaps', '-o', 'name']);
        return r.code === 0 ? r : undefined;
      },
      10_000,
      'RBAC to allow the job',
    );
    expect(after.stdout).toContain('configmap/kube-root-ca.crt');
    // Groups and extra fields are the original's: ask the API server who we are.
    const who = await asJob(file, ['auth', 'whoami', '-o', 'json']);
    const info = (JSON.parse(who.stdout) as { status: { userInfo: { username: string; groups: string[]; extra: Record<string, string[]> } } }).status.userInfo;
    expect(info.username).toMatch(/^gitlab:ci_job:\d+$/);
    expect(info.groups).toEqual(expect.arrayContaining(['gitlab:ci_job', 'gitlab:project:shop/app', 'gitlab:group:shop']));
    expect(info.extra['agent.gitlab.com/project_id']).toEqual(['shop/app']);
    expect(info.extra['agent.gitlab.com/id']).toEqual([String(env.agentId)]);
  });

  it('access_as impersonate: the configured user and groups', async () => {
    const file = await env.kubeconfig(env.jobToken({ project: 'shop/deployer' }));
    const who = await asJob(file, ['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username} {.status.userInfo.groups}']);
    expect(who.stdout).toBe('deployer ["deployers","system:authenticated"]');
  });

  it('refuses impersonation by the job (kubectl --as), whatever access_as says, and says to use access_as instead', async () => {
    for (const project of ['shop/app', 'shop/ops']) {
      const file = await env.kubeconfig(env.jobToken({ project }));
      const r = await asJob(file, ['get', 'configmaps', '--as', 'someone-else']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('Verdict server: impersonation through the CI tunnel is not allowed (the request sends impersonate-user');
      expect(r.stderr).toContain(`to make jobs of project ${project} act as another identity set access_as: {impersonate:`);
    }
  });

  it('a project not in ci_access gets no kubeconfig, and its requests are refused with 403 "agent is not allowed"', async () => {
    const token = env.jobToken({ project: 'other/app' });
    await expect(env.kubeconfig(token)).rejects.toThrow(/no agent allows project other\/app .*agent "edge": project other\/app is not in ci_access.projects/);
    // kubectl with a hand-made kubeconfig for that agent: the proxy decides.
    const allowed = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    const r = await kube.kubectl(['get', 'pods', `--token=ci:${env.agentId}:${token}`], { kubeconfig: allowed });
    expect(r.stderr).toMatch(/Forbidden|forbidden/);
    expect(r.stderr).toContain('Verdict server: agent is not allowed: project other/app is not in ci_access.projects');
  });

  it('groups: environment and protected-branch rules', async () => {
    await expect(env.kubeconfig(env.jobToken({ project: 'prod/web', environment: 'staging', ref: 'main', protected: true }))).rejects.toThrow(
      /allows only environments production, review\/\*, not "staging"/,
    );
    await expect(env.kubeconfig(env.jobToken({ project: 'prod/web', environment: 'production', ref: 'feature' }))).rejects.toThrow(
      /allows only jobs on protected branches/,
    );
    const file = await env.kubeconfig(env.jobToken({ project: 'prod/web', environment: 'review/x-1', ref: 'main', protected: true }));
    expect((await asJob(file, ['get', 'namespaces', 'ci', '-o', 'name'])).stdout.trim()).toBe('namespace/ci');
  });

  it('an expired and a revoked token are refused with 401 and say why', async () => {
    const expired = env.jobToken({ project: 'shop/ops', ttlMs: 60_000 }, Date.now() - 61_000);
    const revokedToken = env.jobToken({ project: 'shop/ops' });
    const file = await env.kubeconfig(revokedToken);
    const jobs = new JobTokens(env.server.db);
    const auth = jobs.authenticate(revokedToken);
    if ('error' in auth) throw new Error(auth.error);
    const job = auth.job;
    expect(jobs.revoke(job.id)).toBe(true);
    const r1 = await kube.kubectl(['get', 'pods', `--token=ci:${env.agentId}:${expired}`], { kubeconfig: file });
    expect(r1.stderr).toMatch(/Unauthorized|must be logged in/);
    const raw = await env.get('/api/v1/namespaces/ci/pods', { authorization: `Bearer ci:${env.agentId}:${expired}` });
    expect(raw.status).toBe(401);
    expect((JSON.parse(raw.body) as { message: string }).message).toMatch(/^Verdict server: the CI job token of job \d+ expired at/);
    const r2 = await asJob(file, ['get', 'pods']);
    expect(r2.stderr).toMatch(/Unauthorized|must be logged in/);
    const raw2 = await env.get('/api/v1/namespaces/ci/pods', { authorization: `Bearer ci:${env.agentId}:${revokedToken}` });
    expect(raw2.status).toBe(401);
    expect((JSON.parse(raw2.body) as { message: string }).message).toMatch(/^Verdict server: the CI job token of job \d+ was revoked/);
    const bad = await env.get('/api/v1/pods', { authorization: 'Bearer not-a-ci-token' });
    expect(bad.status).toBe(401);
  });

  describe('a large list crosses the tunnel compressed', () => {
    // The API server gzips answers of 128 KiB and more when asked; kubectl (Go's transport) always asks, and
    // the proxy asks for a client that does not, and inflates the answer for it (compression.ts).
    const names = Array.from({ length: 800 }, (_, i) => `big-${i}`);
    let token: string;
    let jsonBytes: number;
    beforeAll(async () => {
      const items = names.map((name) => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: 'big' }, data: { payload: 'x'.repeat(300) } }));
      expect((await kube.kubectl(['create', 'namespace', 'big'])).code).toBe(0);
      const created = await kube.kubectl(['create', '-f', '-'], { input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }) });
      expect(created.code, created.stderr).toBe(0);
      token = `ci:${env.agentId}:${env.jobToken({ project: 'shop/ops' })}`;
      jsonBytes = (await kube.kubectl(['get', '--raw', '/api/v1/namespaces/big/configmaps'])).stdout.length;
    });
    const list = async (headers: Record<string, string>) => {
      const before = env.tunnelBytes().toServer;
      const res = await new Promise<IncomingMessage>((resolve, reject) =>
        https
          .get(`${env.proxyUrl}/api/v1/namespaces/big/configmaps`, { ca: env.caPem, headers: { authorization: `Bearer ${token}`, ...headers } }, resolve)
          .on('error', reject),
      );
      const body = Buffer.concat(await res.toArray());
      return { res, body, tunnelBytes: env.tunnelBytes().toServer - before };
    };
    // kube-controller-manager adds kube-root-ca.crt to every namespace.
    const bigNames = (json: string) =>
      (JSON.parse(json) as { items: { metadata: { name: string } }[] }).items
        .map((i) => i.metadata.name)
        .filter((n) => n.startsWith('big-'))
        .sort();

    it("asked for with gzip, as kubectl asks: the client gets the API server's gzip", async () => {
      const { res, body, tunnelBytes } = await list({ 'accept-encoding': 'gzip' });
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-encoding']).toBe('gzip');
      expect(bigNames(gunzipSync(body).toString('utf8'))).toEqual([...names].sort());
      expect(tunnelBytes).toBeLessThan(jsonBytes / 5);
    });

    it('asked for without gzip: the client gets JSON, inflated by the proxy; the tunnel carried it compressed', async () => {
      const { res, body, tunnelBytes } = await list({});
      expect(res.statusCode).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.headers['content-length']).toBeUndefined();
      expect(bigNames(body.toString('utf8'))).toEqual([...names].sort());
      expect(tunnelBytes).toBeLessThan(jsonBytes / 5);
    });

    it('asked for with identity only: nobody compresses it', async () => {
      const { res, body, tunnelBytes } = await list({ 'accept-encoding': 'identity' });
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(bigNames(body.toString('utf8'))).toEqual([...names].sort());
      expect(tunnelBytes).toBeGreaterThan(jsonBytes);
    });
  });

  it('a watch held open for over a minute receives events; no idle timeout cuts it', async () => {
    const file = await env.kubeconfig(env.jobToken({ project: 'shop/ops' }));
    const watch = watchConfigMaps(kube, file, { events: true });
    try {
      await until(() => watch.out.includes('kube-root-ca.crt') || undefined, 15_000, 'the watch to list');
      await new Promise((r) => setTimeout(r, 65_000));
      expect(watch.exitCode, watch.err).toBe(null);
      const created = await kube.kubectl(['create', 'configmap', 'after-a-minute', '-n', 'ci']);
      expect(created.code, created.stderr).toBe(0);
      await until(
        () => /ADDED\s+after-a-minute/.test(watch.out) || undefined,
        10_000,
        () => `the ADDED event (got ${watch.out})`,
      );
    } finally {
      watch.kill();
    }
  }, 120_000);

  it('the agent disconnected mid-request: the watch ends with a Status saying the agent went away', async () => {
    const token = env.jobToken({ project: 'shop/ops' });
    const file = await env.kubeconfig(token);
    const watch = watchConfigMaps(kube, file);
    try {
      await until(() => watch.out.includes('kube-root-ca.crt') || undefined, 15_000, 'the watch to list');
      // kubectl lists, prints, then opens the watch: give it time to be in flight before the cut.
      await new Promise((r) => setTimeout(r, 1500));
      env.cutAgent();
      const code = await Promise.race([watch.closed, new Promise((r) => setTimeout(() => r('still running'), 15_000))]);
      expect(code).not.toBe('still running');
      // kubectl prints the Status the proxy sent as the watch's last event (and, as for any watch
      // stream that ends, exits 0: kubectl's own behaviour, not something a proxy can change).
      expect(`${watch.out}${watch.err}`).toContain('Verdict server: the agent "edge" disconnected before it finished answering');
      // A new request while the agent is away: 503 with a Status that says so (kubectl's discovery shows only "ServiceUnavailable").
      const r = await asJob(file, ['get', 'configmaps']);
      expect(r.stderr).toContain('ServiceUnavailable');
      const raw = await env.get('/api/v1/namespaces/ci/configmaps', { authorization: `Bearer ci:${env.agentId}:${token}` });
      expect(raw.status).toBe(503);
      expect((JSON.parse(raw.body) as { message: string }).message).toMatch(
        /^Verdict server: the agent "edge" is not connected to this server; check that it runs/,
      );
    } finally {
      watch.kill();
      env.restoreAgent();
    }
    // The agent comes back by itself.
    await until(async () => (await asJob(file, ['get', 'configmaps', '-o', 'name'])).code === 0 || undefined, 20_000, 'the agent to reconnect');
  }, 90_000);
});
