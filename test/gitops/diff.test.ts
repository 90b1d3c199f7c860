import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/gitops.js';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi } from '../../src/modules/gitops/kube/api.js';
import { Discovery } from '../../src/modules/gitops/kube/discovery.js';
import { defaultsForTest } from './sync-defaults.js';
import { synchronize } from '../../src/modules/gitops/sync.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { ConfigProject, tempDir } from '../helpers/processes.js';

// `verdict gitops diff` against a real API server: a project synced once, then
// changed; the diff names what would be created, configured (field by field,
// from a server-side dry-run, so normalised values are no change), pruned,
// kept, and refused, and the cluster is left as it was.

const dir = tempDir('verdict-gitops-diff-');
let kube: Kube;
let app: ConfigProject;

const cm = (name: string, data: string, extra = '') => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n${extra}data:\n${data}`;

beforeAll(async () => {
  kube = await startKube();
  await kube.kubectl(['create', 'namespace', 'diffns']);
  mkdirSync(join(dir, 'projects', 'group'), { recursive: true });
  app = new ConfigProject(join(dir, 'projects', 'group', 'app'));
  const first = {
    'm/a.yaml': cm('a', '  v: "1"\n'),
    'm/b.yaml': cm('b', '  v: "1"\n'),
    'm/kept.yaml': cm('kept', '  v: "1"\n', '  annotations: {cli-utils.sigs.k8s.io/on-remove: keep}\n'),
    'm/quota.yaml': 'apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: q\nspec:\n  hard: {cpu: 1000m}\n',
  };
  app.commit(first);
  const api = new KubeApi({
    server: kube.server,
    requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
  });
  const files = Object.entries(first).map(([source, t]) => ({ source, data: Buffer.from(t) }));
  await synchronize(
    files,
    'c1',
    { ...defaultsForTest, defaultNamespace: 'diffns' },
    { api, discovery: new Discovery(api), inventory: inventoryRef('edge', 'group/app', 'diffns') },
  );
  api.close();
  app.git('rm', '-q', 'm/b.yaml', 'm/kept.yaml');
  app.commit({
    'm/a.yaml': cm('a', '  v: "2"\n'),
    'm/new.yaml': cm('new', '  v: "1"\n'),
    'm/svc.yaml': 'apiVersion: v1\nkind: Service\nmetadata:\n  name: twoports\nspec:\n  ports: [{port: 80}, {port: 81}]\n',
  });
}, 300_000);

afterAll(async () => {
  await kube?.stop();
});

/** `verdict gitops diff` of group/app into diffns with these flags: its exit status and what it printed. */
async function diff(...flags: string[]): Promise<{ code: number; text: string }> {
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out.push(String(s));
    return true;
  });
  try {
    const code = await run([
      'diff',
      '--project',
      'group/app',
      '--projects-dir',
      join(dir, 'projects'),
      '--namespace',
      'diffns',
      '--kubeconfig',
      kube.kubeconfig,
      ...flags,
    ]);
    return { code, text: out.join('') };
  } finally {
    spy.mockRestore();
  }
}

describe('verdict gitops diff', () => {
  it('shows creates, field changes, prunes and refusals from a server-side dry-run, and changes nothing', async () => {
    const { code, text } = await diff('--agent', 'edge');
    // A refused object (the Service) is an error, above 1: 1 would say only that the sync changes things.
    expect(code).toBe(3);
    expect(text).toContain('GitOps diff: project group/app at ');
    expect(text).toContain('configure ConfigMap diffns/a  (m/a.yaml#1)\n    data.v: "1" -> "2"\n');
    expect(text).toContain('create    ConfigMap diffns/new  (m/new.yaml#1)');
    // cpu: 1000m is stored as 1: compared through the dry-run, that is no change.
    expect(text).toContain('unchanged ResourceQuota diffns/q');
    expect(text).toMatch(/failed {4}Service diffns\/twoports {2}\(m\/svc\.yaml#1\): Invalid: .*name/);
    expect(text).toContain('prune     ConfigMap diffns/b\n');
    expect(text).toContain('keep      ConfigMap diffns/kept\n');
    expect(text).toContain('Summary: 1 to create, 1 to configure, 1 unchanged, 1 to prune, 1 kept on removal, 1 failed');
    const a = JSON.parse((await kube.kubectl(['get', 'configmap', 'a', '-n', 'diffns', '-o', 'json'])).stdout) as { data: Record<string, string> };
    expect(a.data).toEqual({ v: '1' });
    expect((await kube.kubectl(['get', 'configmap', 'new', '-n', 'diffns'])).code).not.toBe(0);
  });

  it('exits 1 when objects would change and every dry run passes, 0 when nothing would', async () => {
    expect((await diff('--path', 'm/a.yaml')).code).toBe(1);
    expect((await diff('--path', 'm/quota.yaml')).code).toBe(0);
  });
});
