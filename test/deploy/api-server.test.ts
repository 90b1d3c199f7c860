import { readFileSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startKube, type Kube } from '../helpers/kube.js';
import { makeCerts } from '../helpers/certs.js';
import { freePort, REPO, spawnVerdict, tempDir, until } from '../helpers/processes.js';
import { parseYamlConfig } from '../../src/shared/config/schema.js';
import { serverConfigSchema } from '../../src/shared/config/server-config.js';
import { deployKustomizations, deployManifests, POLICY_FILES, simulate, trafficCases, type K8sDoc } from './traffic.js';

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

/** What the kubelet makes of an HTTP(S) probe: the status, or 'failed' (it does not verify certificates). */
function probeStatus(url: string): Promise<number | 'failed'> {
  return new Promise((resolve) => {
    const get = url.startsWith('https:') ? httpsGet : httpGet;
    const req = get(url, { rejectUnauthorized: false, timeout: 5_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 'failed');
    });
    req.on('error', () => resolve('failed'));
    req.on('timeout', () => req.destroy());
  });
}

interface Probe {
  httpGet: { path: string; port: string | number; scheme?: string };
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

  it('every directory of manifests passes kubectl apply -f <dir>/ --dry-run=server --validate=strict (a kustomization in it would be sent as an object of kind Kustomization)', async () => {
    const dirs = [...new Set(deployManifests().map((f) => dirname(f.file)))];
    expect(dirs).toEqual(expect.arrayContaining(['deploy/agent', 'deploy/server']));
    const refused: string[] = [];
    for (const dir of dirs) {
      const r = await kube.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', `${join(REPO, dir)}/`]);
      if (r.code !== 0 || /warning/i.test(r.stderr)) refused.push(`${dir}/: exit ${r.code}: ${r.stderr.trim()}`);
    }
    expect(refused).toEqual([]);
  }, 180_000);

  it('every kustomization passes kubectl apply -k --dry-run=server --validate=strict', async () => {
    const dirs = deployKustomizations();
    expect(dirs).toEqual(expect.arrayContaining(['deploy/server', 'deploy/server-tls']));
    for (const dir of dirs) {
      const r = await kube.kubectl(['apply', '-k', join(REPO, dir), '--dry-run=server', '--validate=strict']);
      expect(r.code, `${dir}: ${r.stderr}`).toBe(0);
      expect(r.stderr, dir).not.toMatch(/warning/i);
    }
  }, 120_000);

  it('deploy/server-tls serves TLS from a mounted Secret and probes over HTTPS (plain HTTP probes would restart the pod forever)', async () => {
    // What `kubectl apply -k` sends: kubectl's own kustomize build.
    const built = parseAllDocuments(await kubectl(['kustomize', join(REPO, 'deploy/server-tls')])).map((d) => d.toJS()) as {
      kind: string;
      data?: Record<string, string>;
      spec?: {
        template?: {
          spec: {
            containers: { livenessProbe: Probe; readinessProbe: Probe; volumeMounts: { name: string; mountPath: string }[] }[];
            volumes: { name: string; secret?: { secretName: string } }[];
          };
        };
      };
    }[];
    const cm = built.find((o) => o.kind === 'ConfigMap')!.data!['server.yaml']!;
    const cfg = parseYamlConfig(cm, 'server.yaml', serverConfigSchema).value;
    expect(cfg.tls).toBeDefined();
    const base = parseYamlConfig(
      (
        deployManifests()
          .find((f) => f.file === 'deploy/server/server.yaml')!
          .docs.find((d) => d.kind === 'ConfigMap') as { data: Record<string, string> }
      ).data['server.yaml']!,
      'server.yaml',
      serverConfigSchema,
    ).value;
    // The overlay's config is the base's plus tls, nothing else changed.
    expect({ ...cfg, tls: undefined }).toEqual({ ...base, tls: undefined });
    const pod = built.find((o) => o.kind === 'Deployment')!.spec!.template!.spec;
    const c = pod.containers[0]!;
    for (const probe of [c.livenessProbe, c.readinessProbe]) expect(probe.httpGet.scheme).toBe('HTTPS');
    for (const file of [cfg.tls!.cert_file, cfg.tls!.key_file]) {
      const m = c.volumeMounts.find((v) => file.startsWith(`${v.mountPath}/`));
      expect(m, `${file} is on no mount`).toBeDefined();
      const secret = pod.volumes.find((v) => v.name === m!.name)!.secret;
      // kubectl create secret tls stores tls.crt and tls.key.
      expect(secret?.secretName).toBe('verdict-server-tls');
      expect(['tls.crt', 'tls.key']).toContain(file.slice(m!.mountPath.length + 1));
    }
    // The server with that config answers the probes over HTTPS, as the kubelet sends them
    // (certificate not verified), and plain HTTP on the same port gets nothing.
    const dir = tempDir('verdict-server-tls-');
    const certs = makeCerts(dir);
    const [http, grpc] = [await freePort(), await freePort()];
    const localCfg = cm
      .replace(/^data_dir: .*$/m, `data_dir: ${join(dir, 'data')}`)
      .replace(/^projects_dir: .*$/m, `projects_dir: ${dir}`)
      .replace(/^http_addr: .*$/m, `http_addr: 127.0.0.1:${http}`)
      .replace(/^grpc_addr: .*$/m, `grpc_addr: 127.0.0.1:${grpc}`)
      .replace(cfg.tls!.cert_file, certs.serverCert)
      .replace(cfg.tls!.key_file, certs.serverKey);
    writeFileSync(join(dir, 'server.yaml'), localCfg);
    const server = spawnVerdict(['server', '--config', join(dir, 'server.yaml')], 'server');
    try {
      await server.waitForLog((l) => l.msg === 'Verdict server started', 30_000);
      for (const probe of [c.livenessProbe, c.readinessProbe]) {
        expect(await probeStatus(`https://127.0.0.1:${http}${probe.httpGet.path}`), probe.httpGet.path).toBe(200);
        expect(await probeStatus(`http://127.0.0.1:${http}${probe.httpGet.path}`), `${probe.httpGet.path} over plain HTTP`).toBe('failed');
      }
    } finally {
      await server.kill();
    }
    expect(readFileSync(join(REPO, 'deploy/server-tls/kustomization.yaml'), 'utf8')).toContain(
      'kubectl -n verdict create secret tls verdict-server-tls --cert=tls.crt --key=tls.key',
    );
  }, 90_000);

  it('a real apply in the documented order (the manifests, then the Secret) keeps the operator\'s agent token on every re-apply, and both Deployments run under Pod Security "restricted"', async () => {
    // The namespaces exist (beforeAll); enforce "restricted" there, as a hardened cluster does.
    await kubectl(['label', 'namespace', 'verdict', 'verdict-agent', 'pod-security.kubernetes.io/enforce=restricted', '--overwrite']);
    const token = async () =>
      Buffer.from(await kubectl(['-n', 'verdict-agent', 'get', 'secret', 'verdict-agent-token', '-o', 'jsonpath={.data.token}']), 'base64').toString();
    // As README and agent.yaml say: apply the manifests, then create the Secret the agent's pod waits for.
    for (const round of [1, 2]) {
      for (const args of [
        ['-f', join(REPO, 'deploy/agent/agent.yaml')],
        ['-f', `${join(REPO, 'deploy/server')}/`],
      ]) {
        const r = await kube.kubectl(['apply', '--validate=strict', ...args]);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
        expect(r.stderr, `${args.join(' ')} (round ${round})`).not.toMatch(/PodSecurity/);
      }
      if (round === 1) await kubectl(['-n', 'verdict-agent', 'create', 'secret', 'generic', 'verdict-agent-token', '--from-literal=token=vdt_agent_real']);
      expect(await token(), `after apply ${round}`).toBe('vdt_agent_real');
    }
    // The controllers made the pods (admission refuses pods that break the level); no
    // kubelet runs them here. Labelling again then warns of nothing.
    for (const ns of ['verdict', 'verdict-agent']) {
      await until(async () => JSON.parse(await kubectl(['-n', ns, 'get', 'pods', '-o', 'json'])).items.length > 0 || undefined, 30_000, `a pod in ${ns}`);
    }
    const r = await kube.kubectl([
      'label',
      'namespace',
      'verdict',
      'verdict-agent',
      'pod-security.kubernetes.io/enforce=restricted',
      '--overwrite',
      '--dry-run=server',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toMatch(/warning/i);
  }, 120_000);

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
