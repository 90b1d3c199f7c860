import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { flowJson, pod, reserved, world, type EpSpec } from '../../src/modules/cilium/policy/testing.js';
import { spawnSync } from 'node:child_process';
import { REPO, tempDir } from '../helpers/processes.js';

// What the network policies in deploy/network-policies/ are judged on: the
// pods as deploy/ itself runs them (namespaces, labels, container ports read
// from the manifests, so a label or port changed there without the policies
// fails the tests), and connections into them, each with whether the policies
// must let it through. Judged by `verdict replay --simulate`, the engine the
// agent uses.

export const NETWORK_POLICIES = join(REPO, 'deploy/network-policies');
export const POLICY_FILES = ['kubernetes.yaml', 'cilium.yaml'].map((f) => join(NETWORK_POLICIES, f));

export interface K8sDoc {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  spec?: {
    template?: {
      metadata?: { labels?: Record<string, string> };
      spec?: { hostNetwork?: boolean; containers?: { ports?: { name?: string; containerPort: number }[] }[] };
    };
  };
}

/** Every YAML file under deploy/, recursively, with its documents (empty ones left out). */
export function deployYamlFiles(): { file: string; docs: K8sDoc[] }[] {
  const out: { file: string; docs: K8sDoc[] }[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ya?ml$/.test(e.name)) {
        const parsed = parseAllDocuments(readFileSync(p, 'utf8'));
        for (const d of parsed) if (d.errors.length) throw new Error(`${relative(REPO, p)}: ${d.errors.map((x) => x.message).join('; ')}`);
        out.push({ file: relative(REPO, p), docs: parsed.map((d) => d.toJS() as K8sDoc).filter((d) => d !== null && d !== undefined) });
      }
    }
  };
  walk(join(REPO, 'deploy'));
  return out;
}

const isKustomization = (f: { file: string }) => /(^|\/)kustomization\.ya?ml$/.test(f.file);

/**
 * Files of deploy/ that are Kubernetes manifests (every document has apiVersion and kind), not
 * Verdict's own config examples nor kustomizations (input of `kubectl apply -k`, not objects).
 */
export function deployManifests(): { file: string; docs: K8sDoc[] }[] {
  return deployYamlFiles().filter(
    (f) => !isKustomization(f) && f.docs.length > 0 && f.docs.every((d) => typeof d.apiVersion === 'string' && typeof d.kind === 'string'),
  );
}

/**
 * Directories of deploy/ holding a kustomization (`kubectl apply -k <dir>`), relative to the repository: a
 * kustomization.yaml, or a file named Kustomization (kustomize reads all three names; `kubectl apply -f <dir>/`
 * skips the last, having no .yaml extension).
 */
export function deployKustomizations(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name));
    if (entries.some((e) => e.isFile() && /^(kustomization\.ya?ml|Kustomization)$/.test(e.name))) out.push(relative(REPO, dir));
    for (const e of entries) if (e.isDirectory()) walk(join(dir, e.name));
  };
  walk(join(REPO, 'deploy'));
  return out;
}

export interface DeployedPod {
  namespace: string;
  labels: Record<string, string>;
  /** Container ports by name. */
  ports: Record<string, number>;
  /** Where it came from, for messages. */
  from: string;
}

function podOf(kind: string, match: (labels: Record<string, string>) => boolean): DeployedPod | undefined {
  for (const { file, docs } of deployManifests()) {
    for (const d of docs) {
      const labels = d.spec?.template?.metadata?.labels;
      if (d.kind !== kind || !labels || !match(labels)) continue;
      if (d.spec?.template?.spec?.hostNetwork) {
        throw new Error(
          `${file}: ${kind}/${d.metadata?.name} runs with hostNetwork: true, so its traffic comes from the node's address and no pod selector in deploy/network-policies matches it; drop hostNetwork or allow the nodes' CIDR there`,
        );
      }
      const ports: Record<string, number> = {};
      for (const c of d.spec?.template?.spec?.containers ?? []) for (const p of c.ports ?? []) if (p.name) ports[p.name] = p.containerPort;
      return { namespace: d.metadata?.namespace ?? 'default', labels, ports, from: `${file} ${kind}/${d.metadata?.name}` };
    }
  }
  return undefined;
}

/** The agent, server and Falco pods as deploy/ runs them. */
export function deployedPods(): { agent: DeployedPod; server: DeployedPod; falco: DeployedPod } {
  const agent = podOf('Deployment', (l) => l.app === 'verdict-agent');
  const server = podOf('Deployment', (l) => l.app === 'verdict-server');
  if (!agent || !server)
    throw new Error('deploy/ has no Deployment with pod label app: verdict-agent or app: verdict-server; the network policies select these labels');
  // The GitOps work ships Falco in deploy/host-security/; until then, Falco as
  // its Helm chart runs it (namespace falco, the chart's standard labels).
  const falco = podOf('DaemonSet', (l) => l['app.kubernetes.io/name'] === 'falco') ?? {
    namespace: 'falco',
    labels: { 'app.kubernetes.io/name': 'falco', 'app.kubernetes.io/instance': 'falco' },
    ports: {},
    from: 'the Falco Helm chart',
  };
  return { agent, server, falco };
}

export interface TrafficCase {
  what: string;
  src: EpSpec;
  dst: EpSpec;
  port: number;
  /** Whether the policies must let the connection through. */
  allowed: boolean;
  /** When denied: the policy named in the attribution (same name in both files). */
  policy?: string;
}

/** Connections into the agent and the server that the policies must allow or deny. */
export function trafficCases(): TrafficCase[] {
  const { agent, server, falco } = deployedPods();
  const port = (p: DeployedPod, name: string) => {
    const n = p.ports[name];
    if (n === undefined) throw new Error(`${p.from} has no container port named ${name}`);
    return n;
  };
  const agentPod = pod(agent.namespace, agent.labels);
  const serverPod = pod(server.namespace, server.labels);
  const falcoPod = pod(falco.namespace, falco.labels);
  // Any workload: a tenant's web pod, compromised or curious.
  const other = pod('shop', { app: 'web' });
  // A pod that wears Falco's label outside Falco's namespace: labels are not identity.
  const impostor = pod('shop', { 'app.kubernetes.io/name': 'falco' });
  // Falco's label in the agent's own namespace does not make a pod Falco either.
  const neighbour = pod(agent.namespace, { 'app.kubernetes.io/name': 'falco' });
  const prometheus = pod('monitoring', { 'app.kubernetes.io/name': 'prometheus' });
  const falcoIn = port(agent, 'falco');
  const obs = port(agent, 'observability');
  const grpc = port(server, 'grpc');
  const http = port(server, 'http');
  const kubernetesApi = port(server, 'kubernetes-api');
  const A = 'verdict-agent-ingress';
  const S = 'verdict-server-ingress';
  return [
    { what: 'Falco posts an event to the agent', src: falcoPod, dst: agentPod, port: falcoIn, allowed: true },
    { what: 'another pod posts a forged event to the agent', src: other, dst: agentPod, port: falcoIn, allowed: false, policy: A },
    { what: "a pod wearing Falco's label in another namespace posts to the agent", src: impostor, dst: agentPod, port: falcoIn, allowed: false, policy: A },
    {
      what: "a pod wearing Falco's label in the agent's namespace posts to the agent",
      src: neighbour,
      dst: agentPod,
      port: falcoIn,
      allowed: false,
      policy: A,
    },
    { what: 'the outside world posts to the agent', src: world('203.0.113.9'), dst: agentPod, port: falcoIn, allowed: false, policy: A },
    { what: 'Falco reaches another port of the agent', src: falcoPod, dst: agentPod, port: 9999, allowed: false, policy: A },
    { what: "Prometheus scrapes the agent's metrics", src: prometheus, dst: agentPod, port: obs, allowed: true },
    { what: 'the kubelet probes the agent', src: reserved('host', 1), dst: agentPod, port: obs, allowed: true },
    { what: 'the agent connects to the agent API', src: agentPod, dst: serverPod, port: grpc, allowed: true },
    { what: 'another pod connects to the agent API', src: other, dst: serverPod, port: grpc, allowed: false, policy: S },
    { what: 'Falco connects to the agent API', src: falcoPod, dst: serverPod, port: grpc, allowed: false, policy: S },
    { what: 'a user opens the feed from outside', src: world('198.51.100.20'), dst: serverPod, port: http, allowed: true },
    {
      what: 'an ingress controller forwards to the feed',
      src: pod('ingress-nginx', { 'app.kubernetes.io/name': 'ingress-nginx' }),
      dst: serverPod,
      port: http,
      allowed: true,
    },
    // The CI tunnel's proxy: jobs run on runners in this cluster or outside it.
    {
      what: "a CI job's kubectl reaches the Kubernetes API proxy from a runner pod",
      src: pod('gitlab-runner', { app: 'gitlab-runner' }),
      dst: serverPod,
      port: kubernetesApi,
      allowed: true,
    },
    { what: "a CI job's kubectl reaches the Kubernetes API proxy from outside", src: world('192.0.2.44'), dst: serverPod, port: kubernetesApi, allowed: true },
    { what: 'another pod reaches an unlisted port of the server', src: other, dst: serverPod, port: 9999, allowed: false, policy: S },
  ];
}

export interface Judged {
  case: TrafficCase;
  /** null when the policies allow the connection. */
  denied: { policies: { kind: string; namespace: string; name: string }[]; responsible: { kind: string; namespace: string; name: string }[] } | null;
}

/**
 * Runs `verdict replay --simulate` (the built CLI) on the cases' opening
 * packets, one flow per line; also returns what it said on stderr (policy
 * warnings, the summary).
 */
export function simulate(policyPaths: string[], cases: TrafficCase[]): { judged: Judged[]; stderr: string } {
  const dir = tempDir('verdict-netpol-');
  const flows = join(dir, 'flows.jsonl');
  // Observed as forwarded: a capture from before the policies were enforced.
  writeFileSync(
    flows,
    cases
      .map((c) => JSON.stringify(flowJson({ src: c.src, dst: c.dst, port: c.port, dir: 'ingress', verdict: 'FORWARDED' })))
      .map((l) => `${l}\n`)
      .join(''),
  );
  const r = spawnSync(process.execPath, [join(REPO, 'bin/verdict.js'), 'replay', '--simulate', '--policies', ...policyPaths, '--flows', flows], {
    cwd: REPO,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`verdict replay exited ${r.status}: ${r.stderr}`);
  const out = r.stdout;
  const byLine = new Map<number, Judged['denied']>();
  for (const l of out.split('\n').filter((x) => x.startsWith('{'))) {
    const o = JSON.parse(l) as { line: number } & NonNullable<Judged['denied']>;
    byLine.set(o.line, { policies: o.policies, responsible: o.responsible });
  }
  return { judged: cases.map((c, i) => ({ case: c, denied: byLine.get(i + 1) ?? null })), stderr: r.stderr };
}
