import { defaultsForTest } from './sync-defaults.js';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIELD_MANAGER } from '../../src/modules/gitops/apply-object.js';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi, type KubeEndpoint, type KubeRequest } from '../../src/modules/gitops/kube/api.js';
import { Discovery } from '../../src/modules/gitops/kube/discovery.js';
import { type SyncResult, type SyncSettings, synchronize } from '../../src/modules/gitops/sync.js';
import { type Kube, startKube } from '../helpers/kube.js';

// One sync at a time against a real API server (with its controllers): what
// the cluster holds afterwards, the inventory, and what each object's result
// says. Each test works in namespaces and an inventory of its own.

let kube: Kube;
let api: KubeApi;

const endpoint = (token: () => string): KubeEndpoint => ({
  server: kube.server,
  requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${token()}` } }),
});

beforeAll(async () => {
  kube = await startKube();
  api = new KubeApi(endpoint(() => kube.adminToken));
}, 300_000);

afterAll(async () => {
  api?.close();
  await kube?.stop();
});

const defaults: SyncSettings = defaultsForTest;

function files(f: Record<string, string>) {
  return Object.entries(f).map(([source, text]) => ({ source, data: Buffer.from(text) }));
}

function sync(
  project: string,
  f: Record<string, string>,
  s: Partial<SyncSettings> = {},
  o: { signal?: AbortSignal; api?: KubeApi; commit?: string; lastApplied?: Map<string, { hash: string; resourceVersion: string }> } = {},
): Promise<SyncResult> {
  const settings = { ...defaults, ...s };
  return synchronize(files(f), o.commit ?? 'c1', settings, {
    api: o.api ?? api,
    discovery: new Discovery(o.api ?? api),
    inventory: inventoryRef('edge', project, settings.defaultNamespace),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.lastApplied ? { lastApplied: o.lastApplied } : {}),
  });
}

interface Live {
  metadata: { annotations?: Record<string, string>; labels?: Record<string, string>; managedFields?: { manager: string }[] };
  data?: Record<string, string>;
  spec?: unknown;
}

async function get(args: string): Promise<Live | undefined> {
  const r = await kube.kubectl(['get', ...args.split(' '), '-o', 'json', '--show-managed-fields']);
  return r.code === 0 ? JSON.parse(r.stdout) : undefined;
}

const cm = (name: string, data: Record<string, string>, extra = '') =>
  `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${extra}data:\n${Object.entries(data)
    .map(([k, v]) => `  ${k}: "${v}"`)
    .join('\n')}\n`;
const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;
const actions = (r: SyncResult) => Object.fromEntries(r.objects.map((o) => [o.object, o.action]));

describe('GitOps sync against a real API server', () => {
  it('applies a commit in dependency order, annotates each object and records a cli-utils inventory', async () => {
    // The namespace's file sorts after the objects in it: order comes from the graph, not the files.
    const r = await sync(
      'apply',
      {
        'app/cm.yaml': `${cm('web', { a: '1' }, '  namespace: shop\n')}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  ports: [{port: 80}]\n`,
        'app/list.json': JSON.stringify({
          apiVersion: 'v1',
          kind: 'List',
          items: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'from-list' }, data: { y: 'y' } }],
        }),
        'z/ns.yaml': ns('shop'),
      },
      { defaultNamespace: 'shop' },
    );
    expect(r.failed).toBe(0);
    expect(actions(r)).toEqual({
      'Namespace shop': 'created',
      'ConfigMap shop/web': 'created',
      'Service shop/web': 'created',
      'ConfigMap shop/from-list': 'created',
    });
    const web = await get('configmap web -n shop');
    expect(web?.metadata.annotations?.['config.k8s.io/owning-inventory']).toBe('edge-apply');
    expect(web?.metadata.managedFields?.map((m: { manager: string }) => m.manager)).toContain(FIELD_MANAGER);
    // The YAML 1.1 pitfall: a bare y in JSON stays the string "y".
    expect((await get('configmap from-list -n shop'))?.data).toEqual({ y: 'y' });
    const inv = await get('configmap inventory-edge-apply -n shop');
    expect(inv?.metadata.labels?.['cli-utils.sigs.k8s.io/inventory-id']).toBe('edge-apply');
    expect(Object.keys(inv?.data ?? {}).sort()).toEqual(['_shop__Namespace', 'shop_from-list__ConfigMap', 'shop_web__ConfigMap', 'shop_web__Service']);
  });

  it('updates what changed, reports the rest unchanged, prunes what left (keep-annotated objects stay), and corrects drift', async () => {
    const base = {
      'a.yaml': cm('one', { v: '1' }),
      'b.yaml': cm('two', { v: '1' }),
      'c.yaml': cm('three', { v: '1' }),
      'd.yaml': cm('kept', { v: '1' }, '  annotations:\n    cli-utils.sigs.k8s.io/on-remove: keep\n'),
    };
    await sync('update', base, { defaultNamespace: 'upd' }).catch(() => undefined);
    await kube.kubectl(['create', 'namespace', 'upd']);
    expect((await sync('update', base, { defaultNamespace: 'upd' })).changed).toBe(4);
    const second = await sync('update', { ...base, 'a.yaml': cm('one', { v: '2' }) }, { defaultNamespace: 'upd' });
    expect([second.changed, second.unchanged]).toEqual([1, 3]);
    expect((await get('configmap one -n upd'))?.data).toEqual({ v: '2' });

    const pruned = await sync('update', { 'a.yaml': cm('one', { v: '2' }) }, { defaultNamespace: 'upd' });
    expect(actions(pruned)).toMatchObject({ 'ConfigMap upd/two': 'pruned', 'ConfigMap upd/three': 'pruned', 'ConfigMap upd/kept': 'kept' });
    expect(await get('configmap two -n upd')).toBeUndefined();
    const kept = await get('configmap kept -n upd');
    expect(kept?.metadata.annotations?.['config.k8s.io/owning-inventory']).toBeUndefined();
    expect(Object.keys((await get('configmap inventory-edge-update -n upd'))?.data ?? {})).toEqual(['upd_one__ConfigMap']);

    // Drift made with kubectl: the next apply of the same commit puts the manifest back.
    await kube.kubectl(['patch', 'configmap', 'one', '-n', 'upd', '--type=merge', '-p', '{"data":{"v":"drifted"}}']);
    const fixed = await sync('update', { 'a.yaml': cm('one', { v: '2' }) }, { defaultNamespace: 'upd' });
    expect([fixed.changed, actions(fixed)['ConfigMap upd/one']]).toEqual([1, 'configured']);
    expect((await get('configmap one -n upd'))?.data).toEqual({ v: '2' });
  });

  it('applies a CRD and its custom resources in one commit, whatever the file order', async () => {
    const crd = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
`;
    const r = await sync(
      'crd',
      {
        'a-widgets.yaml': 'apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n',
        'setup/crd.yaml': crd,
        'setup/crd-again.yaml': crd,
      },
      { defaultNamespace: 'default' },
    );
    expect(r.objects.filter((o) => o.action === 'failed')).toEqual([]);
    expect(actions(r)).toMatchObject({
      'apiextensions.k8s.io/CustomResourceDefinition widgets.example.com': 'created',
      'example.com/Widget default/w1': 'created',
    });
    expect((await get('widgets.example.com w1 -n default'))?.spec).toEqual({ size: 3 });
  });

  it('reports a malformed object with its file and the ValidationError text, and applies the rest', async () => {
    const r = await sync('malformed', {
      'ok.yaml': cm('fine', { a: '1' }),
      'bad.yaml': `${cm('also-fine', { b: '2' })}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n---\napiVersion: nope.example.com/v1\nkind: HelmRelease\nmetadata:\n  name: hr\n`,
    });
    expect(actions(r)).toMatchObject({ 'ConfigMap default/fine': 'created', 'ConfigMap default/also-fine': 'created' });
    const bad = r.objects.filter((o) => o.action === 'failed');
    expect(bad).toEqual([
      {
        object: 'ConfigMap (unnamed)',
        source: 'bad.yaml#2',
        action: 'failed',
        reason: 'invalid object: ConfigMap (unnamed) in bad.yaml (document 2): metadata.name: Required value: name is required',
      },
      {
        object: 'nope.example.com/HelmRelease hr',
        source: 'bad.yaml#3',
        action: 'failed',
        reason: 'no matches for kind "HelmRelease" in version "nope.example.com/v1"',
      },
    ]);
  });

  it('names an invalid object as written, and records neither it nor one the API server refused; one recorded before stays', async () => {
    // A data key the API server refuses (422 Invalid).
    const r = await sync('unrecorded', {
      'bad.yaml': cm('Bad_Name', { a: '1' }),
      'ok.yaml': cm('recorded', { a: '1' }),
      'key.yaml': cm('bad-key', { 'a b': '1' }),
    });
    expect(r.objects.filter((o) => o.action === 'failed')).toEqual([
      {
        object: 'ConfigMap Bad_Name',
        source: 'bad.yaml#1',
        action: 'failed',
        reason: 'invalid object: ConfigMap Bad_Name in bad.yaml (document 1): metadata.name: Invalid value: "Bad_Name": must be a lowercase RFC 1123 subdomain',
      },
      { object: 'ConfigMap default/bad-key', source: 'key.yaml#1', action: 'failed', reason: expect.stringMatching(/^Invalid: .*a valid config key/) },
    ]);
    const inventory = async () => Object.keys((await get('configmap inventory-edge-unrecorded -n default'))?.data ?? {}).sort();
    expect(await inventory()).toEqual(['default_recorded__ConfigMap']);
    // An object the inventory held that turns invalid keeps its place (as cli-utils'), and its live object stays.
    const again = await sync('unrecorded', { 'ok.yaml': cm('recorded', { a: '1' }).replace('"1"', '1') });
    expect(again.objects).toMatchObject([{ object: 'ConfigMap recorded', action: 'failed' }]);
    expect(await inventory()).toEqual(['default_recorded__ConfigMap']);
    expect((await get('configmap recorded -n default'))?.data).toEqual({ a: '1' });
  });

  it('fails the whole commit on a file that does not parse, naming file and line, and touches nothing', async () => {
    await expect(
      sync('syntax', { 'good.yaml': cm('never', { a: '1' }), 'broken.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n' }),
    ).rejects.toThrow(/failed to decode broken\.yaml line \d+/);
    await expect(sync('syntax', { 'x.json': '{"apiVersion": ' })).rejects.toMatchObject({ name: 'VerdictError', code: 'VERDICT_MANIFEST_INVALID' });
    expect(await get('configmap never -n default')).toBeUndefined();
  });

  it('enforces inventory_policy against objects of no inventory and of another one', async () => {
    await kube.kubectl(['create', 'namespace', 'inv']);
    await kube.kubectl(['create', 'configmap', 'loose', '-n', 'inv', '--from-literal=a=1']);
    const f = { 'loose.yaml': cm('loose', { a: '2' }) };
    const refused = await sync('inv-a', f, { defaultNamespace: 'inv' });
    expect(refused.objects[0]).toMatchObject({
      action: 'failed',
      reason: expect.stringContaining('inventory policy prevented actuation (strategy: Apply, status: NoMatch, policy: MustMatch)'),
    });
    expect((await get('configmap loose -n inv'))?.data).toEqual({ a: '1' });
    expect((await sync('inv-a', f, { defaultNamespace: 'inv', inventoryPolicy: 'adopt_if_no_inventory' })).objects[0]?.action).toBe('configured');
    // Now inventory inv-a owns it: another project may take it only with adopt_all.
    const other = await sync('inv-b', f, { defaultNamespace: 'inv', inventoryPolicy: 'adopt_if_no_inventory' });
    expect(other.objects[0]?.reason).toContain('policy: AdoptIfNoInventory');
    expect((await sync('inv-b', f, { defaultNamespace: 'inv', inventoryPolicy: 'adopt_all' })).objects[0]?.action).toMatch(/configured|unchanged/);
    expect((await get('configmap loose -n inv'))?.metadata.annotations?.['config.k8s.io/owning-inventory']).toBe('edge-inv-b');
    // inv-a no longer owns it: its prune leaves it alone.
    const prunedByA = await sync('inv-a', {}, { defaultNamespace: 'inv' });
    expect(prunedByA.objects[0]).toMatchObject({ action: 'skipped', reason: expect.stringContaining('inventory policy prevented deletion') });
    expect(await get('configmap loose -n inv')).toBeDefined();
  });

  it('dry-run client touches nothing; dry-run server asks the API server and writes nothing', async () => {
    const f = {
      'a.yaml': cm('dry', { a: '1' }),
      'svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata:\n  name: twoports\nspec:\n  ports: [{port: 80}, {port: 81}]\n',
    };
    const client = await sync('dry', f, { dryRun: 'client' });
    expect(actions(client)).toEqual({ 'ConfigMap default/dry': 'created', 'Service default/twoports': 'created' });
    const server = await sync('dry', f, { dryRun: 'server' });
    expect(actions(server)).toEqual({ 'ConfigMap default/dry': 'created', 'Service default/twoports': 'failed' });
    // The API server's own validation, only a server-side dry run can tell.
    expect(server.objects.find((o) => o.object === 'Service default/twoports')?.reason).toMatch(/Invalid.*name/);
    expect(await get('configmap dry -n default')).toBeUndefined();
    expect(await get('configmap inventory-edge-dry -n default')).toBeUndefined();
  });

  it('names the verb RBAC refused, per object', async () => {
    await kube.kubectl(['create', 'namespace', 'rbac']);
    const who = (await kube.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig: kube.userKubeconfig })).stdout.trim();
    // ConfigMaps (objects and the inventory) may be written, Services not.
    await kube.kubectl(['create', 'role', 'cm', '-n', 'rbac', '--verb=get,list,create,patch', '--resource=configmaps']);
    await kube.kubectl(['create', 'rolebinding', 'cm', '-n', 'rbac', '--role=cm', `--user=${who}`]);
    const limited = new KubeApi(endpoint(() => kube.userToken));
    try {
      const svc = 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n';
      const r = await synchronize(
        files({ 'a.yaml': cm('allowed', { a: '1' }), 'svc.yaml': svc }),
        'c1',
        { ...defaults, defaultNamespace: 'rbac' },
        {
          api: limited,
          discovery: new Discovery(limited),
          inventory: inventoryRef('edge', 'rbac', 'rbac'),
        },
      );
      expect(actions(r)).toEqual({ 'ConfigMap rbac/allowed': 'created', 'Service rbac/web': 'failed' });
      expect(r.objects.find((o) => o.action === 'failed')?.reason).toMatch(
        new RegExp(`^Forbidden: services "web" is forbidden: User "${who}" cannot get resource "services" in API group "" in the namespace "rbac"`),
      );
    } finally {
      limited.close();
    }
  });

  it('stops waiting when cancelled', async () => {
    // No kubelet here: a Deployment with a replica never becomes Current.
    const deploy =
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: slow}}\n  template:\n    metadata: {labels: {app: slow}}\n    spec: {containers: [{name: c, image: busybox}]}\n';
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error('Synchronization was canceled')), 1500);
    // A wait that went on after the cancel would end at the 10 min reconcile_timeout, far past this test's timeout, and not with the cancel's reason.
    await expect(sync('slow', { 'd.yaml': deploy }, { reconcileTimeoutMs: 600_000 }, { signal: abort.signal })).rejects.toThrow('Synchronization was canceled');
    const timedOut = await sync('slow', { 'd.yaml': deploy }, { reconcileTimeoutMs: 1000 });
    expect(timedOut.objects[0]).toMatchObject({ action: 'failed', reason: expect.stringContaining('is InProgress, not Current') });
  });

  it('a default_namespace that does not exist: the failure names the inventory and says to create the namespace', async () => {
    // The original's users met a bare `namespaces "x" not found` here, naming neither the object nor the fix.
    await expect(sync('nons', { 'a.yaml': cm('a', { v: '1' }) }, { defaultNamespace: 'no-such-ns' })).rejects.toThrow(
      /^cannot write the inventory ConfigMap no-such-ns\/inventory-edge-nons: namespaces "no-such-ns" not found; the inventory is kept in the project's default_namespace "no-such-ns", which must exist: create it, or add its Namespace to the project$/,
    );
    // With the Namespace in the commit it works: the inventory is written once the namespace exists.
    const r = await sync('nons', { 'a.yaml': cm('a', { v: '1' }), 'ns.yaml': ns('no-such-ns') }, { defaultNamespace: 'no-such-ns' });
    expect(r.failed).toBe(0);
  });

  it('keeps a Namespace the commit dropped while objects of the commit or the inventory are in it, still listed in the inventory', async () => {
    // Deleting it would take the commit's objects and the inventory with it (cli-utils's LocalNamespacesFilter).
    const first = await sync('in-use', { 'ns.yaml': ns('in-use'), 'cm.yaml': cm('keep-me', { a: '1' }) }, { defaultNamespace: 'in-use' });
    expect(first.failed).toBe(0);
    const dropped = await sync('in-use', { 'cm.yaml': cm('keep-me', { a: '1' }) }, { defaultNamespace: 'in-use' }, { commit: 'c2' });
    expect(dropped.objects.find((o) => o.object === 'Namespace in-use')).toMatchObject({
      action: 'skipped',
      reason: expect.stringContaining('still holds objects'),
    });
    expect(await get('configmap keep-me -n in-use')).toBeDefined();
    expect(Object.keys((await get('configmap inventory-edge-in-use -n in-use'))?.data ?? {}).sort()).toEqual([
      '_in-use__Namespace',
      'in-use_keep-me__ConfigMap',
    ]);

    // Another Namespace dropped with the one object in it, annotated on-remove: keep: that object stays, so does it.
    const keep = '  namespace: in-use-other\n  annotations:\n    cli-utils.sigs.k8s.io/on-remove: keep\n';
    const base = { 'cm.yaml': cm('keep-me', { a: '1' }) };
    await sync(
      'in-use',
      { ...base, 'other.yaml': `${ns('in-use-other')}---\n${cm('released', { a: '1' }, keep)}` },
      { defaultNamespace: 'in-use' },
      { commit: 'c3' },
    );
    const both = await sync('in-use', base, { defaultNamespace: 'in-use' }, { commit: 'c4' });
    expect(actions(both)).toMatchObject({ 'ConfigMap in-use-other/released': 'kept', 'Namespace in-use-other': 'skipped' });
    expect(await get('configmap released -n in-use-other')).toBeDefined();
  });

  it('nothing to apply (no files yet, or only an invalid object) in a default_namespace not created yet: an empty sync, not a failure', async () => {
    // Another project creates the namespace later: until this one has objects to apply, it has nothing to record there.
    const none = await sync('later', {}, { defaultNamespace: 'created-later' });
    expect([none.applied, none.failed, none.objects]).toEqual([0, 0, []]);
    const invalid = await sync('later', { 'bad.yaml': cm('Bad_Name', { a: '1' }) }, { defaultNamespace: 'created-later' });
    expect(invalid.objects).toMatchObject([{ object: 'ConfigMap Bad_Name', action: 'failed' }]);
    expect(await get('namespace created-later')).toBeUndefined();
  });

  it('a sync cancelled right after it created the Namespace its inventory lives in: the inventory lists that Namespace', async () => {
    // The cancel falls between the Namespace's apply and the inventory's write: the Namespace must not be left unlisted.
    const abort = new AbortController();
    class CancelAfterNamespace extends KubeApi {
      override async request<T>(r: KubeRequest) {
        const res = await super.request<T>(r);
        if (r.method === 'PATCH' && r.path === '/api/v1/namespaces/cancel-early') abort.abort(new Error('Synchronization was canceled'));
        return res;
      }
    }
    const cancelling = new CancelAfterNamespace(api.endpoint);
    try {
      await expect(
        sync(
          'early',
          { 'a.yaml': cm('a', { v: '1' }), 'ns.yaml': ns('cancel-early') },
          { defaultNamespace: 'cancel-early' },
          { api: cancelling, signal: abort.signal },
        ),
      ).rejects.toThrow('Synchronization was canceled');
    } finally {
      cancelling.close();
    }
    expect(Object.keys((await get('configmap inventory-edge-early -n cancel-early'))?.data ?? {}).sort()).toEqual([
      '_cancel-early__Namespace',
      'cancel-early_a__ConfigMap',
    ]);
    // Nothing past the Namespace was applied.
    expect(await get('configmap a -n cancel-early')).toBeUndefined();
  });

  it('an object that was not Current is waited for again on the next sync of the same commit, even when nothing changed it', async () => {
    // The worker's memory of what it applied (lastApplied) spares the apply of an object nobody changed; it must
    // not spare the wait, or the third try of a commit whose Deployment never becomes available reports success.
    const deploy =
      'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: never\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: never}}\n  template:\n    metadata: {labels: {app: never}}\n    spec: {containers: [{name: c, image: busybox}]}\n';
    const lastApplied = new Map<string, { hash: string; resourceVersion: string }>();
    for (let i = 0; i < 3; i++) {
      const r = await sync('never', { 'd.yaml': deploy }, { reconcileTimeoutMs: 1000 }, { lastApplied });
      expect(r.objects[0], `sync ${i + 1}`).toMatchObject({ action: 'failed', reason: expect.stringContaining('is InProgress, not Current') });
    }
    // What was Current is still spared: a ConfigMap is applied once, then neither applied nor read again.
    const once = await sync('never', { 'd.yaml': cm('settled', { a: '1' }) }, {}, { lastApplied });
    expect(once.failed).toBe(0);
    const again = await sync('never', { 'd.yaml': cm('settled', { a: '1' }) }, {}, { lastApplied });
    expect(actions(again)).toEqual({ 'ConfigMap default/settled': 'unchanged' });
  });
});
