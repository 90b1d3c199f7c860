import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KUBE_INSTALL_COMMAND } from '../helpers/kube.js';
import { ConfigProject, freePort, killAll, spawnVerdict, tempDir, until, type VerdictProcess } from '../helpers/processes.js';

// `verdict demo --kubernetes`: the demo's agent watches policies in a real API
// server that the demo starts (scripts/kube.sh) and stops. A user applies a
// labelled policy with kubectl, and the feed's alerts name it. The agent also
// keeps a manifest project synced there (GitOps) with the RBAC deploy/agent/ ships.

interface Alert {
  title: string;
  policies: { kind: string; namespace: string; name: string }[];
}

function alive(pid: number): boolean {
  try {
    // A zombie (state Z) has exited; its reaper may take a moment.
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function startDemo(
  dir: string,
): Promise<{ demo: VerdictProcess; http: number; kubeconfig: string; kubectl: string; example: string; apiserverPid: number }> {
  const http = await freePort();
  const demo = spawnVerdict(['demo', '--kubernetes', '--data-dir', dir, '--http-addr', `127.0.0.1:${http}`, '--interval', '200'], 'demo');
  // The control plane starts in 4-7 s on an idle machine; far more when others build.
  const m = await demo.waitForStdout(/ {2}try: {9}(\S+) --kubeconfig (\S+) apply -f (\S+)\n/, 180_000);
  const [, kubectl, kubeconfig, example] = m as unknown as [string, string, string, string];
  expect(demo.stdout).toMatch(/ {2}kubernetes: {2}https:\/\/127\.0\.0\.1:\d+ /);
  expect(demo.stdout).toContain(`  kubeconfig:  ${kubeconfig}`);
  const apiserverPid = Number(readFileSync(join(dir, 'kubernetes/control-plane/kube-apiserver.pid'), 'utf8'));
  expect(alive(apiserverPid)).toBe(true);
  return { demo, http, kubeconfig, kubectl, example, apiserverPid };
}

describe('verdict demo --kubernetes', () => {
  afterAll(async () => {
    await killAll();
  });

  it('watches policies in its API server: a policy applied with kubectl changes the alerts; syncs its manifest project; Ctrl-C stops the API server', async () => {
    const dir = tempDir('verdict-demo-kube-');
    const { demo, http, kubeconfig, kubectl, example, apiserverPid } = await startDemo(dir);
    const token = readFileSync(join(dir, 'feed-token'), 'utf8').trim();
    const alerts = async () => {
      const res = await fetch(`http://127.0.0.1:${http}/api/v1/alerts?limit=500`, { headers: { authorization: `Bearer ${token}` } });
      return ((await res.json()) as { alerts: Alert[] }).alerts;
    };
    const named = (a: Alert[]) => a.filter((x) => x.policies.some((p) => p.namespace === 'shop' && p.name === 'payments-from-cart-only'));

    // Before: the frontend's dropped calls to payments are blamed on the project's policy alone.
    const before = await until(
      async () => {
        const a = await alerts();
        return a.some((x) => x.title.includes('frontend -> shop/Deployment/payments:8443')) ? a : undefined;
      },
      60_000,
      'an alert for frontend -> payments',
    );
    expect(named(before)).toEqual([]);

    // The agent is not the admin: it runs as its ServiceAccount with deploy/agent/agent.yaml's RBAC.
    const env = { ...process.env, KUBERC: 'off' };
    const agentKubeconfig = join(dir, 'kubernetes/control-plane/agent-kubeconfig');
    const can = (verb: string, resource = 'ciliumnetworkpolicies.cilium.io', where = '--all-namespaces') => {
      try {
        return execFileSync(kubectl, ['--kubeconfig', agentKubeconfig, 'auth', 'can-i', verb, resource, where], {
          encoding: 'utf8',
          env,
        }).trim();
      } catch (e) {
        return String((e as { stdout?: string }).stdout ?? e).trim();
      }
    };
    expect([can('watch'), can('list'), can('create')]).toEqual(['yes', 'yes', 'no']);

    // The kubectl the demo printed, the way a user runs it.
    const out = execFileSync(kubectl, ['--kubeconfig', kubeconfig, 'apply', '-f', example], { encoding: 'utf8', env });
    expect(out).toContain('ciliumnetworkpolicy.cilium.io/payments-from-cart-only created');

    // After: the same drops are also blamed on the policy from the cluster.
    const after = await until(
      async () => {
        const n = named(await alerts());
        return n.some((x) => x.title.includes('frontend -> shop/Deployment/payments:8443')) ? n : undefined;
      },
      30_000,
      'alerts naming shop/payments-from-cart-only',
    );
    for (const a of after) expect(a.policies.map((p) => p.name).sort()).toEqual(['payments-from-cart-only', 'payments-ingress']);

    // GitOps: the agent keeps manifests/ of the configuration project synced into shop, as the ServiceAccount
    // narrowed there by deploy/agent/gitops-namespace.yaml (agent.yaml's cluster-wide binding left out).
    expect(demo.stdout).toMatch(/ {2}gitops: {6}\S+\/config-project\/manifests\/ synced to namespace shop /);
    const canIn = (verb: string, ns: string) => can(verb, 'configmaps', `--namespace=${ns}`);
    expect([canIn('create', 'shop'), canIn('delete', 'shop'), canIn('create', 'default'), canIn('create', 'db')]).toEqual(['yes', 'yes', 'no', 'no']);
    const first = await until(() => demo.logs.find((l) => l.msg === 'Objects synchronized' && l.mod_name === 'gitops'), 90_000, 'the first GitOps sync');
    expect(first).toMatchObject({ applied: 3, failed: 0 });
    const get = async <T>(path: string) => {
      const res = await fetch(`http://127.0.0.1:${http}${path}`, { headers: { authorization: `Bearer ${token}` } });
      expect(res.status).toBe(200);
      return (await res.json()) as T;
    };
    type Project = { project_id: string; commit_id: string; ok: boolean; applied: number; pruned: number; failed: number; last_ok_commit: string | null };
    type AgentView = { name: string; connection: { connected: boolean }; modules: string[]; module_status: { gitops: { projects: Project[] } } };
    const projectOf = async () => (await get<{ agents: AgentView[] }>('/api/v1/agents')).agents.find((a) => a.name === 'demo');
    const synced = await until(
      async () => {
        const a = await projectOf();
        return a?.module_status.gitops.projects[0]?.ok ? a : undefined;
      },
      30_000,
      'the sync in GET /api/v1/agents',
    );
    expect(synced.connection.connected).toBe(true);
    expect(synced.modules).toContain('gitops');
    const project = new ConfigProject(join(dir, 'config-project'));
    expect(synced.module_status.gitops.projects).toEqual([
      expect.objectContaining({ project_id: '', commit_id: project.git('rev-parse', 'HEAD'), ok: true, applied: 3, failed: 0, pruned: 0 }),
    ]);
    const kube = async (args: string[]) => execFileSync(kubectl, ['--kubeconfig', kubeconfig, ...args, '-o', 'json'], { encoding: 'utf8', env });
    const inventory = JSON.parse(await kube(['get', 'configmap', 'inventory-demo-config', '-n', 'shop'])) as { data: Record<string, string> };
    expect(Object.keys(inventory.data).sort()).toEqual(['shop_storefront-settings__ConfigMap', 'shop_storefront__Service', 'shop_storefront_apps_Deployment']);
    const deployment = JSON.parse(await kube(['get', 'deployment', 'storefront', '-n', 'shop'])) as {
      metadata: { annotations: Record<string, string> };
      status: { conditions?: { type: string; status: string }[] };
    };
    expect(deployment.metadata.annotations['config.k8s.io/owning-inventory']).toBe('demo-config');
    expect(deployment.status.conditions?.find((c) => c.type === 'Available')?.status).toBe('True');

    // A commit to the project, the way the demo tells the user: the change is applied, the removed Service pruned.
    const file = join(dir, 'config-project/manifests/storefront.yaml');
    const text = readFileSync(file, 'utf8');
    const withoutService = text
      .split(/^---\n/m)
      .filter((d) => !/^kind: Service$/m.test(d))
      .join('---\n')
      .replace('currency: EUR', 'currency: CHF');
    const next = project.commit({ 'manifests/storefront.yaml': withoutService });
    const after2 = await until(
      async () => {
        const p = (await projectOf())?.module_status.gitops.projects[0];
        return p?.commit_id === next && p.ok ? p : undefined;
      },
      60_000,
      'the next commit synced',
    );
    expect(after2).toMatchObject({ applied: 2, pruned: 1, failed: 0, last_ok_commit: next });
    expect((JSON.parse(await kube(['get', 'configmap', 'storefront-settings', '-n', 'shop'])) as { data: Record<string, string> }).data.currency).toBe('CHF');
    expect(() =>
      execFileSync(kubectl, ['--kubeconfig', kubeconfig, 'get', 'service', 'storefront', '-n', 'shop'], { encoding: 'utf8', env, stdio: 'pipe' }),
    ).toThrow(/NotFound/);

    await demo.kill('SIGTERM');
    expect(await demo.exited).toBe(0);
    // The demo stopped its control plane and removed its state (kubeconfig included).
    expect(alive(apiserverPid)).toBe(false);
    expect(existsSync(kubeconfig)).toBe(false);
  }, 300_000);

  it('a demo killed outright still takes its API server down (the owner-pid watchdog)', async () => {
    const dir = tempDir('verdict-demo-kube-');
    const { demo, apiserverPid, kubeconfig } = await startDemo(dir);
    await demo.kill('SIGKILL');
    await until(() => (!alive(apiserverPid) && !existsSync(kubeconfig) ? true : undefined), 60_000, 'the API server to stop after the demo was killed');
  }, 300_000);

  it('without the Kubernetes build, says which command installs it and starts nothing', async () => {
    const dir = tempDir('verdict-demo-kube-');
    const http = await freePort();
    // An empty cache: the binaries are looked for there (scripts/kube.sh, VERDICT_CACHE_DIR).
    const demo = spawnVerdict(['demo', '--kubernetes', '--data-dir', dir, '--http-addr', `127.0.0.1:${http}`], 'demo', {
      VERDICT_CACHE_DIR: tempDir('verdict-empty-cache-'),
    });
    expect(await demo.exited).toBe(1);
    expect(demo.stderr).toContain(`\`${KUBE_INSTALL_COMMAND}\``);
    expect(demo.stderr).toContain('without --kubernetes');
    expect(demo.stdout).not.toContain('Verdict demo is running');
    expect(existsSync(join(dir, 'server'))).toBe(false);
  }, 60_000);
});
