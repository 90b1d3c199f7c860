import { defaultsForTest } from './sync-defaults.js';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi } from '../../src/modules/gitops/kube/api.js';
import { Discovery } from '../../src/modules/gitops/kube/discovery.js';
import { type SyncResult, type SyncSettings, synchronize } from '../../src/modules/gitops/sync.js';
import { type Kube, startKube } from '../helpers/kube.js';

// The wait after each wave against a real API server with its controllers (no
// kubelet: no pod ever runs): a Deployment past its progressDeadlineSeconds
// is Failed and not waited for; a sync of hundreds of objects under one signal
// (the agent's) adds no abort listener per request.

let kube: Kube;
let api: KubeApi;

beforeAll(async () => {
  kube = await startKube();
  api = new KubeApi({
    server: kube.server,
    requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
  });
}, 300_000);

afterAll(async () => {
  api?.close();
  await kube?.stop();
});

const settings: SyncSettings = { ...defaultsForTest, reconcileTimeoutMs: 120_000 };

function sync(project: string, f: Record<string, string>, s: Partial<SyncSettings>, signal?: AbortSignal): Promise<SyncResult> {
  const all = { ...settings, ...s };
  return synchronize(
    Object.entries(f).map(([source, text]) => ({ source, data: Buffer.from(text) })),
    'c1',
    all,
    { api, discovery: new Discovery(api), inventory: inventoryRef('edge', project, all.defaultNamespace), ...(signal ? { signal } : {}) },
  );
}

const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
const deployment = (name: string, namespace: string, extra = '') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${namespace}
spec:
${extra}  replicas: 1
  selector:
    matchLabels: {app: ${name}}
  template:
    metadata:
      labels: {app: ${name}}
    spec:
      containers:
        - name: c
          image: registry.example/none:1
`;

describe('GitOps wait against a real API server', () => {
  it('stops waiting for a Deployment past its progressDeadlineSeconds and reports it failed with the reason, well before reconcile_timeout', async () => {
    const r = await sync(
      'wait/failed',
      { 'ns.yaml': ns('wait-failed'), 'd.yaml': deployment('stuck', 'wait-failed', '  progressDeadlineSeconds: 1\n') },
      {
        defaultNamespace: 'wait-failed',
        // Far past this test's timeout: a wait that went on for a Failed object would not end within it.
        reconcileTimeoutMs: 600_000,
      },
    );
    const d = r.objects.find((o) => o.object === 'apps/Deployment wait-failed/stuck');
    expect(d).toMatchObject({
      action: 'failed',
      reason: expect.stringMatching(/^apps\/Deployment wait-failed\/stuck is Failed, not Current: Progress deadline exceeded: /),
    });
    expect(d!.reason).not.toContain('reconcile_timeout');
    expect(r.failed).toBe(1);
  }, 180_000);

  it('syncs a few hundred objects under one signal without MaxListenersExceededWarning (apply pool, wait reads)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const f: Record<string, string> = { 'ns.yaml': ns('wait-many') };
      for (let i = 0; i < 300; i++)
        f[`cm-${i}.yaml`] = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-${i}\n  namespace: wait-many\ndata:\n  i: "${i}"\n`;
      // Never available without a kubelet: read again by the wait each round until reconcile_timeout.
      for (let i = 0; i < 40; i++) f[`d-${i}.yaml`] = deployment(`d-${i}`, 'wait-many');
      const ctl = new AbortController();
      const r = await sync('wait/many', f, { defaultNamespace: 'wait-many', reconcileTimeoutMs: 3_000 }, ctl.signal);
      // The Deployments are applied, then reported failed by the wait.
      expect(r.applied).toBe(301);
      expect(r.failed).toBe(40);
      expect(r.objects.filter((o) => o.action === 'failed').every((o) => o.reason?.includes('(reconcile_timeout 3000 ms)'))).toBe(true);
      // Warnings are emitted on the next tick.
      await new Promise((ok) => setImmediate(ok));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message)).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  }, 180_000);

  it('a cancelled sync still ends its requests in flight, with the caller’s reason', async () => {
    const f: Record<string, string> = { 'ns.yaml': ns('wait-cancel') };
    for (let i = 0; i < 20; i++) f[`d-${i}.yaml`] = deployment(`d-${i}`, 'wait-cancel');
    const ctl = new AbortController();
    const run = sync('wait/cancel', f, { defaultNamespace: 'wait-cancel', reconcileTimeoutMs: 600_000 }, ctl.signal);
    setTimeout(() => ctl.abort(new Error('stop here')), 2_000);
    // A sync that went on after the cancel would end at the 10 min reconcile_timeout, far past this test's timeout.
    await expect(run).rejects.toThrow('stop here');
  }, 60_000);
});
