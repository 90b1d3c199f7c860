import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { REPO, tempDir } from '../helpers/processes.js';
import { deployManifests, POLICY_FILES, simulate, trafficCases, type K8sDoc } from './traffic.js';

// Every manifest in deploy/ against a real kube-apiserver (scripts/kube.sh):
// `kubectl apply --dry-run=server --validate=strict` runs admission, defaulting,
// schema validation and unknown-field checks exactly as `kubectl apply` would in
// a cluster, so a manifest the server refuses fails here and not at a user's.
// CRDs are installed first (for real), and the namespaces the manifests name
// exist, as they would once the Namespace objects of the same files are
// applied. The network policies are then created for real and read back, and
// what the server stored must still keep forged Falco posts out.

let kube: Kube;

async function kubectl(args: string[], input?: string): Promise<string> {
  const r = await kube.kubectl(args, input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (exit ${r.code}): ${r.stderr}`);
  return r.stdout;
}

const isCrd = (d: K8sDoc) => d.kind === 'CustomResourceDefinition';

beforeAll(async () => {
  // A missing build fails here with the command that installs it (no skipping).
  kube = await startKube();
  const manifests = deployManifests();
  // CRDs first, for real: objects of their kinds cannot be checked before the server serves them.
  const crdFiles = manifests.filter((f) => f.docs.every(isCrd));
  for (const f of crdFiles) await kubectl(['apply', '--validate=strict', '-f', join(REPO, f.file)]);
  const crdNames = crdFiles.flatMap((f) => f.docs.map((d) => `crd/${d.metadata!.name}`));
  if (crdNames.length) await kubectl(['wait', '--for=condition=Established', '--timeout=60s', ...crdNames]);
  // A dry run creates nothing, so a Namespace and the objects in it cannot go in one
  // dry run: create the namespaces the manifests use (the dry run of their Namespace
  // objects then checks them as an update).
  const namespaces = new Set(
    manifests.flatMap((f) => f.docs.flatMap((d) => (d.kind === 'Namespace' ? [d.metadata!.name!] : d.metadata?.namespace ? [d.metadata.namespace] : []))),
  );
  // --save-config: as if applied, so the dry run sees what apply would (no annotation warning).
  for (const ns of namespaces) await kubectl(['create', 'namespace', ns, '--save-config']);
}, 300_000);

afterAll(async () => {
  await kube?.stop();
}, 60_000);

describe('deploy/ against a real API server', () => {
  it('finds the manifests to check (a new directory of manifests is checked without editing this test)', () => {
    const files = deployManifests().map((f) => f.file);
    expect(files).toEqual(
      expect.arrayContaining([
        'deploy/agent/agent.yaml',
        'deploy/server/server.yaml',
        'deploy/crds/cilium-policies.yaml',
        'deploy/network-policies/kubernetes.yaml',
        'deploy/network-policies/cilium.yaml',
      ]),
    );
    // deploy/examples holds Verdict's own configuration files, not Kubernetes objects.
    expect(files.some((f) => f.startsWith('deploy/examples/'))).toBe(false);
  });

  it('every manifest passes kubectl apply --dry-run=server --validate=strict', async () => {
    const manifests = deployManifests();
    expect(
      manifests.some((f) => f.docs.every(isCrd)),
      'deploy/ has no CRD file; the Cilium policies need theirs',
    ).toBe(true);
    const refused: string[] = [];
    for (const f of manifests) {
      const r = await kube.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', join(REPO, f.file)]);
      // Warnings (deprecated APIs, fields the server drops) count as refusals: they are
      // what a user would see first.
      if (r.code !== 0 || /warning/i.test(r.stderr)) {
        refused.push(`${f.file}: exit ${r.code}: ${r.stderr.trim()}`);
        continue;
      }
      // One line per object, each judged by the server ("(server dry run)").
      const lines = r.stdout.trim().split('\n');
      expect(lines, f.file).toHaveLength(f.docs.length);
      for (const l of lines) expect(l, f.file).toMatch(/ \(server dry run\)$/);
    }
    expect(refused).toEqual([]);
  }, 180_000);

  it('stores the network policies as written, and what it stores still lets only Falco post to the agent', async () => {
    const dir = tempDir('verdict-netpol-stored-');
    for (const file of POLICY_FILES) {
      await kubectl(['create', '--validate=strict', '-f', file]);
      const kind = file.endsWith('cilium.yaml') ? 'ciliumnetworkpolicies.cilium.io' : 'networkpolicies.networking.k8s.io';
      const stored = await kubectl(['get', kind, '--all-namespaces', '-o', 'json']);
      const list = JSON.parse(stored) as { items: { metadata: { name: string; namespace: string }; spec: unknown }[] };
      expect(list.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`).sort()).toEqual([
        'verdict-agent/verdict-agent-ingress',
        'verdict/verdict-server-ingress',
      ]);
      // Nothing pruned or rewritten: the spec the server keeps is the one in the file.
      const written = deployManifests().find((f) => join(REPO, f.file) === file)!.docs as { metadata: { name: string }; spec: unknown }[];
      for (const w of written) expect(list.items.find((i) => i.metadata.name === w.metadata.name)?.spec, `${file}: ${w.metadata.name}`).toEqual(w.spec);
      // What the policy watch would read: the server's JSON, defaults and all.
      const out = join(dir, `${kind}.json`);
      writeFileSync(out, stored);
      const cases = trafficCases();
      const { judged, stderr } = simulate([out], cases);
      const wrong = judged.filter((j) => (j.denied === null) !== j.case.allowed).map((j) => `${j.case.what}: ${j.denied ? 'denied' : 'allowed'}`);
      expect(wrong, `${file} as stored by the API server`).toEqual([]);
      expect(stderr).not.toMatch(/warning|cannot be parsed/i);
    }
  }, 120_000);
});
