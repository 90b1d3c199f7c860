import { fileURLToPath } from 'node:url';
import { kubeConnection, type KubeConnection } from '../../src/agent/kubernetes/connection.js';
import { PolicyWatcher, type PolicySnapshot, type PolicyWatchOptions } from '../../src/modules/cilium/kube-watch.js';
import { PolicyEngine } from '../../src/modules/cilium/policy/engine.js';
import { flow, names, pod, world } from '../../src/modules/cilium/policy/testing.js';
import type { Kube } from '../helpers/kube.js';

// What the policy-watch tests against the real API server share: the CRDs
// installed, the PolicyWatcher feeding a PolicyEngine as the Cilium module
// does, flows to attribute, and waiting for a condition.

export const CRDS = fileURLToPath(new URL('../../deploy/crds/cilium-policies.yaml', import.meta.url));
export const AGENT_YAML = fileURLToPath(new URL('../../deploy/agent/agent.yaml', import.meta.url));

export async function must(kube: Kube, args: string[], input?: string, kubeconfig?: string): Promise<string> {
  const r = await kube.kubectl(args, { ...(input !== undefined ? { input } : {}), ...(kubeconfig ? { kubeconfig } : {}) });
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export async function installCrds(kube: Kube): Promise<void> {
  await must(kube, ['apply', '-f', CRDS]);
  await must(kube, [
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/ciliumnetworkpolicies.cilium.io',
    'crd/ciliumclusterwidenetworkpolicies.cilium.io',
  ]);
  // Established is not yet served: for a moment lists answer 429 "storage is (re)initializing".
  for (let i = 0; ; i++) {
    const r = await kube.kubectl(['get', 'cnp,ccnp', '-A']);
    if (r.code === 0) return;
    if (i > 100) throw new Error(`the policy CRDs are established but not served: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** kubectl apply of objects given as JSON (never YAML: YAML 1.1 turns a bare y into true). */
export function apply(kube: Kube, ...objs: object[]): Promise<string> {
  return must(kube, ['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objs }));
}

const ALERT = { 'app.gitlab.com/alert': 'true' };

/** A labelled CiliumNetworkPolicy: pods app=<app> in <ns> accept ingress on these ports only. */
export function cnp(name: string, ns: string, app: string, ports: string[]): object {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumNetworkPolicy',
    metadata: { name, namespace: ns, annotations: ALERT },
    spec: { endpointSelector: { matchLabels: { app } }, ingress: [{ toPorts: [{ ports: ports.map((port) => ({ port, protocol: 'TCP' })) }] }] },
  };
}

/** A labelled CiliumClusterwideNetworkPolicy denying egress to one CIDR. */
export function ccnp(name: string, cidr: string): object {
  return {
    apiVersion: 'cilium.io/v2',
    kind: 'CiliumClusterwideNetworkPolicy',
    metadata: { name, annotations: ALERT },
    spec: { endpointSelector: {}, egressDeny: [{ toCIDR: [cidr] }], enableDefaultDeny: { egress: false } },
  };
}

/** A labelled Kubernetes NetworkPolicy: pods app=<app> in <ns> accept no ingress. */
export function knp(name: string, ns: string, app: string): object {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace: ns, annotations: ALERT },
    spec: { podSelector: { matchLabels: { app } }, policyTypes: ['Ingress'] },
  };
}

export function namespace(name: string): object {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

export const client = pod('shop', 'client');
export const web = pod('shop', 'web');
export const db = pod('db', 'db');
/** A dropped connection attempt to web:<port>. */
export const toWeb = (port: number) => flow({ src: client, dst: web, port });
export const toDb = flow({ src: client, dst: db, port: 5432 });
/** Dropped by a deny rule (Cilium's reason 181, POLICY_DENY). */
export const toMetadata = flow({ src: web, dst: world('169.254.169.254'), dir: 'egress', port: 80, reason: 181 });

export interface Logged {
  level: string;
  msg: string;
  obj: Record<string, unknown>;
}

export interface Watched {
  watcher: PolicyWatcher;
  logs: Logged[];
  snapshots: PolicySnapshot[];
  /** Which policies alert for a flow, as `ns/name`, with the engine built from the last snapshot. */
  blame(f: ReturnType<typeof flow>): string[] | null;
  stop(): Promise<void>;
}

/** A PolicyWatcher feeding a PolicyEngine, as the Cilium module runs them. */
export function watch(connection: KubeConnection | string, opts: Partial<PolicyWatchOptions> = {}): Watched {
  const logs: Logged[] = [];
  const at = (level: string) => (obj: object, msg: string) => void logs.push({ level, msg, obj: obj as Record<string, unknown> });
  const snapshots: PolicySnapshot[] = [];
  let engine = new PolicyEngine([]);
  const watcher = new PolicyWatcher({
    connection: typeof connection === 'string' ? kubeConnection({ kubeconfig: connection }) : connection,
    log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') },
    onChange: (s) => {
      snapshots.push(s);
      engine = new PolicyEngine(s.policies);
    },
    backoff: { initialMs: 100, maxMs: 500, jitter: false },
    debounceMs: 20,
    ...opts,
  });
  const done = watcher.run();
  return {
    watcher,
    logs,
    snapshots,
    blame: (f) => names(engine.attribute(f)),
    stop: async () => {
      watcher.stop();
      await done;
    },
  };
}

/** Polls until `get` returns something other than undefined; the error names what was awaited. */
export async function until<T>(get: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until the flow's attribution is `want`. */
export async function attributed(w: Watched, f: ReturnType<typeof flow>, want: string[] | null, what: string, ms = 10_000): Promise<void> {
  await until(
    () => (JSON.stringify(w.blame(f)) === JSON.stringify(want) ? true : undefined),
    `${what}: attribution ${JSON.stringify(want)} (last ${JSON.stringify(w.blame(f))})`,
    ms,
  );
}
