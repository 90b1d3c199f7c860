import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi } from '../../src/modules/gitops/kube/api.js';
import { Discovery } from '../../src/modules/gitops/kube/discovery.js';
import { type SyncResult, synchronize } from '../../src/modules/gitops/sync.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { REPO } from '../helpers/processes.js';
import { defaultsForTest } from './sync-defaults.js';

// GitOps with the permissions deploy/agent/ ships, as the agent's own
// ServiceAccount against a real API server: agent.yaml's cluster-wide grant
// lets it write anything its manifests hold; narrowed the documented way
// (gitops-namespace.yaml bound per namespace instead), every object it may not
// write fails on its own with the verb the API server refused (get, patch,
// delete), and the rest of the commit is applied.

let kube: Kube;
let saApi: KubeApi;
let adminApi: KubeApi;
const SA = 'system:serviceaccount:verdict-agent:verdict-agent';

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await kube.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
  return r.stdout;
}

const apiAs = (token: string) =>
  new KubeApi({ server: kube.server, requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${token}` } }) });

beforeAll(async () => {
  kube = await startKube();
  // What agent.yaml gives the agent in a cluster: its ServiceAccount and every ClusterRole and binding.
  const rbac = parseAllDocuments(readFileSync(join(REPO, 'deploy/agent/agent.yaml'), 'utf8'))
    .map((d) => d.toJS() as { kind: string })
    .filter((o) => ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'].includes(o?.kind));
  const file = join(kube.stateDir, 'agent-rbac.json');
  writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: rbac }));
  await kubectl(['apply', '-f', file]);
  for (const ns of ['team-a', 'team-b']) await kubectl(['create', 'namespace', ns]);
  saApi = apiAs((await kubectl(['create', 'token', 'verdict-agent', '-n', 'verdict-agent'])).trim());
  adminApi = apiAs(kube.adminToken);
}, 300_000);

afterAll(async () => {
  saApi?.close();
  adminApi?.close();
  await kube?.stop();
});

const cm = (name: string, ns: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  namespace: ${ns}\ndata:\n  v: "1"\n`;
const ns = (name: string) => `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${name}\n`;

function sync(api: KubeApi, project: string, f: Record<string, string>): Promise<SyncResult> {
  const settings = { ...defaultsForTest, defaultNamespace: 'team-a' };
  return synchronize(
    Object.entries(f).map(([source, text]) => ({ source, data: Buffer.from(text) })),
    'c1',
    settings,
    { api, discovery: new Discovery(api), inventory: inventoryRef('edge', project, settings.defaultNamespace) },
  );
}

const byObject = (r: SyncResult) => Object.fromEntries(r.objects.map((o) => [o.object, { action: o.action, reason: o.reason ?? '' }]));

async function inventoryKeys(project: string): Promise<string[]> {
  return Object.keys(
    (JSON.parse(await kubectl(['get', 'configmap', `inventory-edge-${project}`, '-n', 'team-a', '-o', 'json'])) as { data: object }).data,
  ).sort();
}

describe('GitOps with the RBAC deploy/agent/ ships', () => {
  it("agent.yaml's grant lets the agent's ServiceAccount create namespaced and cluster-scoped objects anywhere", async () => {
    const r = await sync(saApi, 'wide', { 'ns.yaml': ns('team-c'), 'a.yaml': cm('wide', 'team-a'), 'c.yaml': cm('wide', 'team-c') });
    expect(byObject(r)).toEqual({
      'Namespace team-c': { action: 'created', reason: '' },
      'ConfigMap team-a/wide': { action: 'created', reason: '' },
      'ConfigMap team-c/wide': { action: 'created', reason: '' },
    });
  });

  it('narrowed to a namespace by gitops-namespace.yaml: what it may not write fails per object, naming the verb refused', async () => {
    // Before narrowing, the project holds a ConfigMap in team-b (applied as the admin).
    expect((await sync(adminApi, 'narrow', { 'a.yaml': cm('a', 'team-a'), 'old.yaml': cm('old', 'team-b') })).failed).toBe(0);

    // The documented narrowing: no cluster-wide binding; the same ClusterRole bound in team-a only.
    await kubectl(['delete', 'clusterrolebinding', 'verdict-agent-gitops']);
    await kubectl(['apply', '-n', 'team-a', '-f', join(REPO, 'deploy/agent/gitops-namespace.yaml')]);
    // team-b grants reading only (as a view role would).
    await kubectl(['create', 'role', 'read', '-n', 'team-b', '--verb=get,list,watch', '--resource=configmaps']);
    await kubectl(['create', 'rolebinding', 'read', '-n', 'team-b', '--role=read', '--serviceaccount=verdict-agent:verdict-agent']);

    const r = await sync(saApi, 'narrow', { 'a.yaml': cm('a', 'team-a'), 'b.yaml': cm('b', 'team-b'), 'ns.yaml': ns('team-d') });
    const got = byObject(r);
    expect(got['ConfigMap team-a/a']?.action).toMatch(/^(unchanged|configured)$/);
    // Readable, not writable: the apply's patch is refused.
    expect(got['ConfigMap team-b/b']).toEqual({
      action: 'failed',
      reason: expect.stringMatching(
        new RegExp(`^Forbidden: configmaps "b" is forbidden: User "${SA}" cannot patch resource "configmaps" in API group "" in the namespace "team-b"`),
      ),
    });
    // Cluster-scoped and not granted: not even read (the API server names a Namespace as its own namespace).
    expect(got['Namespace team-d']).toEqual({
      action: 'failed',
      reason: expect.stringMatching(
        new RegExp(`^Forbidden: namespaces "team-d" is forbidden: User "${SA}" cannot get resource "namespaces" in API group "" in the namespace "team-d"`),
      ),
    });
    // Pruning what left the commit: readable, so found; not deletable, so it stays, and stays in the inventory.
    expect(got['ConfigMap team-b/old']).toEqual({
      action: 'failed',
      reason: expect.stringMatching(
        new RegExp(
          `^ConfigMap team-b/old: Forbidden: configmaps "old" is forbidden: User "${SA}" cannot delete resource "configmaps" in API group "" in the namespace "team-b"`,
        ),
      ),
    });
    expect(r.failed).toBe(3);
    expect((await kube.kubectl(['get', 'configmap', 'old', '-n', 'team-b'])).code).toBe(0);
    expect((await kube.kubectl(['get', 'namespace', 'team-d'])).code).not.toBe(0);
    // What the API server refused to write (team-b/b, team-d) is not recorded; what it refused to delete stays.
    expect(await inventoryKeys('narrow')).toEqual(['team-a_a__ConfigMap', 'team-b_old__ConfigMap']);
  });
});
