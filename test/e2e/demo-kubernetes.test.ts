import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KUBE_INSTALL_COMMAND } from '../helpers/kube.js';
import { freePort, killAll, spawnVerdict, tempDir, until, type VerdictProcess } from '../helpers/processes.js';

// `verdict demo --kubernetes`: the demo's agent watches policies in a real API
// server that the demo starts (scripts/kube.sh) and stops. A user applies a
// labelled policy with kubectl, and the feed's alerts name it.

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

  it('watches policies in its API server: a policy applied with kubectl changes the alerts; Ctrl-C stops the API server', async () => {
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
    const can = (verb: string) => {
      try {
        return execFileSync(kubectl, ['--kubeconfig', agentKubeconfig, 'auth', 'can-i', verb, 'ciliumnetworkpolicies.cilium.io', '--all-namespaces'], {
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
