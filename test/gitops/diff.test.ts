import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../../src/cli/gitops.js';
import { AgentRegistry } from '../../src/server/agents/agent-registry.js';
import { openServerDb } from '../../src/server/store/server-db.js';
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
// kept, and refused, and the cluster is left as it was. With --agent, the ref,
// globs, namespace, prune and inventory_policy come from the agent's entry in
// its config.yaml (the agents registered in a server database), flags winning.

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
  // A branch only edge's entry names.
  app.git('checkout', '-q', '-b', 'next');
  app.commit({ 'm/a.yaml': cm('a', '  v: "3"\n') });
  app.git('checkout', '-q', 'main');

  // keeper synchronised group/app once into keepns; its entry says prune: false.
  await kube.kubectl(['create', 'namespace', 'keepns']);
  const api2 = new KubeApi({
    server: kube.server,
    requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
  });
  await synchronize(
    [{ source: 'm/gone.yaml', data: Buffer.from(cm('gone', '  v: "1"\n')) }],
    'c1',
    { ...defaultsForTest, defaultNamespace: 'keepns' },
    { api: api2, discovery: new Discovery(api2), inventory: inventoryRef('keeper', 'group/app', 'keepns') },
  );
  api2.close();

  const entry = (yaml: string) => `gitops:\n  manifest_projects:\n    - id: group/app\n${yaml.replace(/^/gm, '      ')}\n`;
  const config = new ConfigProject(join(dir, 'config'));
  config.commit({
    '.gitlab/agents/edge/config.yaml': entry('default_namespace: diffns\nref: {branch: next}\npaths: [{glob: m/a.yaml}, {glob: m/new.yaml}]'),
    '.gitlab/agents/stranger/config.yaml': entry('default_namespace: diffns\npaths: [{glob: m/a.yaml}]'),
    '.gitlab/agents/adopter/config.yaml': entry('default_namespace: diffns\ninventory_policy: adopt_all\npaths: [{glob: m/a.yaml}]'),
    '.gitlab/agents/keeper/config.yaml': entry('default_namespace: keepns\nprune: false\npaths: [{glob: m/new.yaml}]'),
    '.gitlab/agents/rehearser/config.yaml': entry('default_namespace: keepns\ndry_run_strategy: server\npaths: [{glob: m/new.yaml}]'),
  });
  mkdirSync(join(dir, 'data'));
  const db = openServerDb(join(dir, 'data'));
  const registry = new AgentRegistry(db);
  for (const name of ['edge', 'stranger', 'adopter', 'keeper', 'rehearser']) registry.register(name, config.dir);
  db.close();
}, 300_000);

afterAll(async () => {
  await kube?.stop();
});

/** `verdict gitops diff` of group/app with these flags (agents from the database in dir/data): its exit status and what it printed. */
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
      '--data-dir',
      join(dir, 'data'),
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
    // --ref and --path win over edge's entry; its default_namespace names the inventory to prune against.
    const { code, text } = await diff('--agent', 'edge', '--ref', 'main', '--path', 'm/*.yaml');
    // A refused object (the Service) is an error, above 1: 1 would say only that the sync changes things.
    expect(code).toBe(3);
    expect(text).toMatch(
      /^GitOps diff: project group\/app at [0-9a-f]{12} against https:\/\/\S+: ref branch:main \(from --ref\), paths m\/\*\.yaml \(from --path\), namespace diffns \(from edge's config\.yaml\), pruning against diffns\/inventory-edge-group-app, inventory_policy must_match \(from edge's config\.yaml: \.gitlab\/agents\/edge\/config\.yaml in \S+\/config at [0-9a-f]{12}\)\n/,
    );
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
    expect((await diff('--namespace', 'diffns', '--path', 'm/a.yaml')).code).toBe(1);
    expect((await diff('--namespace', 'diffns', '--path', 'm/quota.yaml')).code).toBe(0);
  });

  it("takes the ref, globs and default_namespace from the agent's entry", async () => {
    const { code, text } = await diff('--agent', 'edge');
    expect(text).toMatch(
      /^GitOps diff: project group\/app at [0-9a-f]{12} against \S+: ref branch:next \(from edge's config\.yaml\), paths m\/a\.yaml, m\/new\.yaml \(from edge's config\.yaml\), namespace diffns \(from edge's config\.yaml\), pruning against diffns\/inventory-edge-group-app, /,
    );
    // Branch next, only the two globs' files, in diffns where edge's inventory is.
    expect(text).toContain('configure ConfigMap diffns/a  (m/a.yaml#1)\n    data.v: "1" -> "3"\n');
    expect(text).toContain('create    ConfigMap diffns/new  (m/new.yaml#1)');
    expect(text).toContain('prune     ConfigMap diffns/b\n');
    expect(text).toContain('keep      ConfigMap diffns/kept\n');
    // Its globs leave out m/quota.yaml, which the inventory holds: edge would prune it.
    expect(text).toContain('prune     ResourceQuota diffns/q\n');
    expect(text).not.toContain('twoports');
    expect(text).toContain('Summary: 1 to create, 1 to configure, 0 unchanged, 2 to prune, 1 kept on removal, 0 failed');
    expect(code).toBe(1);
  });

  it('lets --namespace win over the entry, and says so', async () => {
    const { text } = await diff('--agent', 'edge', '--namespace', 'default');
    expect(text).toContain(
      "namespace default (from --namespace), pruning against default/inventory-edge-group-app (not the agent's: its entry keeps it in diffns),",
    );
    expect(text).toContain('create    ConfigMap default/a  (m/a.yaml#1)');
    expect(text).not.toContain('prune ');
  });

  it("shows what the entry's inventory_policy refuses, and what it adopts", async () => {
    const stranger = await diff('--agent', 'stranger');
    expect(stranger.text).toContain(
      'failed    ConfigMap diffns/a  (m/a.yaml#1): inventory policy prevented actuation (strategy: Apply, status: NoMatch, policy: MustMatch): the object belongs to inventory "edge-group-app"; set inventory_policy: adopt_all to take it over\n',
    );
    expect(stranger.code).toBe(3);
    const adopter = await diff('--agent', 'adopter');
    expect(adopter.text).toContain('inventory_policy adopt_all (');
    expect(adopter.text).toContain('configure ConfigMap diffns/a  (m/a.yaml#1)\n    data.v: "1" -> "2"\n');
    expect(adopter.code).toBe(1);
  });

  it('prunes nothing for an entry with prune: false', async () => {
    const { code, text } = await diff('--agent', 'keeper');
    expect(text).toContain("namespace keepns (from keeper's config.yaml), prune false: nothing is pruned (inventory keepns/inventory-keeper-group-app)");
    expect(text).toContain('create    ConfigMap keepns/new  (m/new.yaml#1)');
    expect(text).not.toContain('keepns/gone');
    expect(code).toBe(1);
    // Not for want of an inventory: the one keeper wrote holds the object.
    const inv = JSON.parse((await kube.kubectl(['get', 'configmap', 'inventory-keeper-group-app', '-n', 'keepns', '-o', 'json'])).stdout) as {
      data: Record<string, string>;
    };
    expect(Object.keys(inv.data)).toEqual(['keepns_gone__ConfigMap']);
  });

  it('says when the entry only dry-runs (dry_run_strategy)', async () => {
    const { text } = await diff('--agent', 'rehearser');
    expect(text).toContain('inventory_policy must_match, dry_run_strategy server: the agent only dry-runs this project and writes none of it (from rehearser');
    expect(text).toContain('create    ConfigMap keepns/new  (m/new.yaml#1)');
  });
});
