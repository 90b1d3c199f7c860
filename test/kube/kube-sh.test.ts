// scripts/kube.sh end to end: a real etcd + kube-apiserver + kube-controller-manager
// on loopback, driven with the kubectl of the same release and plain HTTPS.
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KUBE_VERSION, startKube, type Kube } from '../helpers/kube.js';

const NS = 'verdict-kube-sh';

// Gone or a zombie: the daemons are orphans, and their reaper may take seconds.
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function httpsStatus(kube: Kube, path: string, token: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${kube.server}${path}`, { ca: readFileSync(kube.caFile), headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('scripts/kube.sh', () => {
  let kube: Kube | undefined;

  beforeAll(async () => {
    kube = await startKube();
  }, 300_000);

  afterAll(async () => {
    await kube?.stop();
  }, 60_000);

  it('runs the pinned release (client and server)', async () => {
    const r = await kube!.kubectl(['version', '-o', 'json']);
    expect(r.code, r.stderr).toBe(0);
    const v = JSON.parse(r.stdout) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
    expect(v.clientVersion.gitVersion).toBe(KUBE_VERSION);
    expect(v.serverVersion.gitVersion).toBe(KUBE_VERSION);
  });

  it('lets the admin create a namespace and a ConfigMap', async () => {
    // JSON, not YAML: YAML 1.1 would turn a bare `y` into true.
    const manifest = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } },
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'settings', namespace: NS }, data: { mode: 'y' } },
      ],
    });
    const r = await kube!.kubectl(['apply', '-f', '-'], { input: manifest });
    expect(r.code, r.stderr).toBe(0);
    const got = await kube!.kubectl(['get', 'configmap', 'settings', '-n', NS, '-o', 'json']);
    expect(got.code, got.stderr).toBe(0);
    expect((JSON.parse(got.stdout) as { data: Record<string, string> }).data).toEqual({ mode: 'y' });
  });

  it('refuses the limited user (RBAC 403)', async () => {
    const r = await kube!.kubectl(['get', 'secrets', '-n', NS], { kubeconfig: kube!.userKubeconfig });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Forbidden.*User "verdict-user" cannot list resource "secrets"/);
    expect(await httpsStatus(kube!, `/api/v1/namespaces/${NS}/secrets`, kube!.userToken)).toBe(403);
    expect(await httpsStatus(kube!, `/api/v1/namespaces/${NS}/secrets`, kube!.adminToken)).toBe(200);
  });

  it('finishes deleting a namespace (the controller manager runs)', async () => {
    const r = await kube!.kubectl(['delete', 'namespace', NS, '--wait=true', '--timeout=60s'], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    const got = await kube!.kubectl(['get', 'namespace', NS]);
    expect(got.code).not.toBe(0);
    expect(got.stderr).toMatch(/NotFound/);
  }, 90_000);

  it('stops every process and removes the state dir', async () => {
    const k = kube!;
    const pids = ['etcd', 'kube-apiserver', 'kube-controller-manager'].map((c) => Number(readFileSync(join(k.stateDir, `${c}.pid`), 'utf8')));
    await k.stop();
    expect(existsSync(k.stateDir)).toBe(false);
    for (const pid of pids) expect(running(pid), `pid ${pid} still running`).toBe(false);
    await k.stop(); // idempotent
    kube = undefined;
  });
});
