import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { VerdictError } from '../shared/errors.js';

// `verdict demo --kubernetes`: a real Kubernetes control plane for the demo's
// agent to watch policies in, started through scripts/kube.sh (etcd,
// kube-apiserver, kube-controller-manager on loopback), with the policy CRDs
// from deploy/crds installed. It belongs to the demo: the script's watchdog
// stops it when the demo's process exits, however it exits.

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SCRIPT = join(ROOT, 'scripts/kube.sh');
const CRDS = join(ROOT, 'deploy/crds/cilium-policies.yaml');
const AGENT_YAML = join(ROOT, 'deploy/agent/agent.yaml');
const GITOPS_NAMESPACE_YAML = join(ROOT, 'deploy/agent/gitops-namespace.yaml');
/** The parts of deploy/agent/agent.yaml that give the agent its identity and access; the Deployment needs a kubelet. */
const AGENT_RBAC_KINDS = new Set(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding']);
/** GitOps' cluster-wide write grant, left out: the demo narrows it to its namespace the way docs/gitops.md says. */
const GITOPS_CLUSTER_BINDING = 'verdict-agent-gitops';
export const KUBE_INSTALL_COMMAND = 'bash scripts/kube.sh install';

/** The namespaces of the demo's scenario (src/peers/hubble-relay/demo-scenario.ts), so policies for them can be applied. */
const DEMO_NAMESPACES = ['shop', 'db'];

/**
 * The manifest project the demo's agent keeps in sync: manifests/ of the
 * configuration project (a manifest project without an id is the
 * configuration project itself). Only kinds that become Current without a
 * kubelet, which this control plane lacks: a Deployment with replicas: 0 is
 * Available once the deployment controller has seen it, while one with a
 * replica would wait for Pods that never run and fail at reconcile_timeout.
 */
export const DEMO_GITOPS = {
  namespace: 'shop',
  config: [
    'gitops:',
    '  manifest_projects:',
    '    - default_namespace: shop  # no id: this configuration project',
    '      paths:',
    '        - glob: "manifests/**/*.yaml"',
    '      reconcile_timeout: 2m',
    '      resync_interval: 1m',
  ],
  files: {
    'manifests/storefront.yaml': `# Synchronised by the agent's GitOps module (verdict demo --kubernetes). Edit and
# commit: the agent applies the change; delete an object and commit: it is pruned.
apiVersion: v1
kind: ConfigMap
metadata:
  name: storefront-settings
data:
  currency: EUR
  checkout: "on"
---
apiVersion: v1
kind: Service
metadata:
  name: storefront
spec:
  selector:
    app: storefront
  ports:
    - name: http
      port: 80
      targetPort: 8080
---
# replicas: 0 because this cluster has no kubelet: Pods would never run.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: storefront
spec:
  replicas: 0
  selector:
    matchLabels:
      app: storefront
  template:
    metadata:
      labels:
        app: storefront
    spec:
      containers:
        - name: web
          image: nginx:1.27
          ports:
            - containerPort: 8080
`,
  } as Record<string, string>,
};

/** A labelled policy the user applies to see attribution change: payments accepts cart only. */
const EXAMPLE_POLICY = `# Apply with the kubectl line verdict demo printed. payments already accepts only
# cart (shop/payments-ingress, from policies/ in the configuration project); this
# policy says so again from the cluster, so the frontend's and the debug pod's
# calls to payments, which the demo's Relay reports as dropped, are blamed on
# it too: new alerts name shop/payments-from-cart-only. Delete it and they stop.
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: payments-from-cart-only
  namespace: shop
  annotations:
    app.gitlab.com/alert: "true"
spec:
  endpointSelector:
    matchLabels:
      app: payments
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: cart
      toPorts:
        - ports:
            - port: "8443"
              protocol: TCP
`;

/** The control plane could not be started; the message says what to do. */

export interface DemoKubernetes {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig, for the user. */
  kubeconfig: string;
  /** The agent's: its ServiceAccount from deploy/agent/agent.yaml, with exactly the RBAC shipped there. */
  agentKubeconfig: string;
  /** kubectl of the same release (a kubectl on PATH may be another version, or not kubectl). */
  kubectl: string;
  /** A labelled policy to apply, written by start. */
  examplePolicy: string;
  stop(): Promise<void>;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr: stderr || (err && !stderr ? err.message : '') });
    });
  });
}

/**
 * Starts the control plane with its state in stateDir, installs the CRDs and
 * the demo's namespaces, and writes the example policy there.
 */
export async function startDemoKubernetes(stateDir: string): Promise<DemoKubernetes> {
  mkdirSync(stateDir, { recursive: true });
  const env = { ...process.env, VERDICT_KUBE_STATE: join(stateDir, 'control-plane'), VERDICT_KUBE_OWNER_PID: String(process.pid) };
  const started = await run('bash', [SCRIPT, 'start'], env, 300_000);
  if (started.code !== 0) {
    if (started.stderr.includes(`run: ${KUBE_INSTALL_COMMAND}`)) {
      throw new VerdictError(
        'VERDICT_UNAVAILABLE',
        `--kubernetes needs the Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, kubectl), which are not built on this machine. ` +
          `Build them once with \`${KUBE_INSTALL_COMMAND}\` in ${ROOT} (a cold build takes about 8 minutes and 4.4 GB of disk; later runs take seconds), ` +
          'or run the demo without --kubernetes.',
      );
    }
    await run('bash', [SCRIPT, 'stop'], env, 60_000);
    throw new VerdictError(
      'VERDICT_UNAVAILABLE',
      `--kubernetes: scripts/kube.sh start failed (exit ${started.code}):\n${started.stderr.trim().split('\n').slice(-20).join('\n')}`,
    );
  }
  const stop = async () => {
    const r = await run('bash', [SCRIPT, 'stop'], env, 60_000);
    if (r.code !== 0)
      throw new Error(
        `scripts/kube.sh stop failed (exit ${r.code}): ${r.stderr.trim()}; stop it with VERDICT_KUBE_STATE=${env.VERDICT_KUBE_STATE} bash scripts/kube.sh stop`,
      );
  };
  try {
    const field = (k: string) => {
      const m = new RegExp(`^${k}=(\\S+)$`, 'm').exec(started.stdout);
      if (!m)
        throw new VerdictError(
          'VERDICT_UNAVAILABLE',
          `--kubernetes: scripts/kube.sh start printed no ${k}= line (got ${JSON.stringify(started.stdout.slice(0, 500))}); is scripts/kube.sh from this checkout?`,
        );
      return m[1]!;
    };
    const server = field('server');
    const kubeconfig = field('kubeconfig');
    const bin = (await run('bash', [SCRIPT, 'path'], env, 10_000)).stdout.trim();
    const kubectl = join(bin, 'kubectl');
    // KUBERC=off: a user's ~/.kube/kuberc must not change what the demo runs.
    const kubectlEnv = { ...process.env, KUBERC: 'off' };
    const k = async (what: string, args: string[]) => {
      const r = await run(kubectl, [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(stateDir, 'kubectl-cache')}`, ...args], kubectlEnv, 90_000);
      if (r.code !== 0)
        throw new VerdictError('VERDICT_UNAVAILABLE', `--kubernetes: ${what} failed (kubectl ${args.join(' ')}, exit ${r.code}): ${r.stderr.trim()}`);
      return r.stdout;
    };
    // JSON, not YAML: kubectl would read YAML 1.1, where some bare words are booleans.
    const applyObjects = (what: string, file: string, items: unknown[]) => {
      writeFileSync(join(stateDir, file), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
      return k(what, ['apply', '-f', join(stateDir, file)]);
    };
    await k('installing the policy CRDs', ['apply', '-f', CRDS]);
    await k('waiting for the policy CRDs', [
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/ciliumnetworkpolicies.cilium.io',
      'crd/ciliumclusterwidenetworkpolicies.cilium.io',
    ]);
    await applyObjects(
      'creating the demo namespaces',
      'namespaces.json',
      DEMO_NAMESPACES.map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })),
    );

    // The agent runs as it would in a cluster: as its ServiceAccount, with the
    // ClusterRole deploy/ ships, not as the admin (the demo breaks if that RBAC
    // does not let the agent watch policies).
    type Doc = { kind: string; metadata: { name: string; namespace?: string } };
    const docs = (file: string) =>
      parseAllDocuments(readFileSync(file, 'utf8'))
        .map((d) => d.toJS() as Partial<Doc> | null)
        .filter((o): o is Doc => typeof o?.kind === 'string' && typeof o.metadata?.name === 'string');
    const rbac = docs(AGENT_YAML).filter(
      (o) => AGENT_RBAC_KINDS.has(o.kind) && !(o.kind === 'ClusterRoleBinding' && o.metadata.name === GITOPS_CLUSTER_BINDING),
    );
    const sa = rbac.find((o) => o.kind === 'ServiceAccount');
    if (!sa?.metadata.namespace)
      throw new VerdictError('VERDICT_UNAVAILABLE', `--kubernetes: ${AGENT_YAML} has no ServiceAccount with a namespace; the demo's agent runs as it`);
    // GitOps may write in the demo's namespace only: deploy/agent/gitops-namespace.yaml bound there.
    const narrowed = docs(GITOPS_NAMESPACE_YAML).map((o) => ({ ...o, metadata: { ...o.metadata, namespace: DEMO_GITOPS.namespace } }));
    await applyObjects("applying the agent's ServiceAccount and RBAC from deploy/agent/", 'agent-rbac.json', [...rbac, ...narrowed]);
    // A year: the demo's agent must not lose the API server to an expired token.
    const token = (await k("creating the agent's token", ['create', 'token', sa.metadata.name, '-n', sa.metadata.namespace, '--duration=8760h'])).trim();
    const agentKubeconfig = join(stateDir, 'control-plane', 'agent-kubeconfig');
    const agentConfig = {
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'verdict-agent',
      clusters: [{ name: 'verdict', cluster: { server, 'certificate-authority': field('ca') } }],
      users: [{ name: 'verdict-agent', user: { token } }],
      contexts: [{ name: 'verdict-agent', context: { cluster: 'verdict', user: 'verdict-agent', namespace: sa.metadata.namespace } }],
    };
    // In the control plane's state dir: removed with it, token and all.
    writeFileSync(agentKubeconfig, JSON.stringify(agentConfig, null, 2), { mode: 0o600 });
    const examplePolicy = join(stateDir, 'payments-from-cart-only.yaml');
    writeFileSync(examplePolicy, EXAMPLE_POLICY);
    return { server, kubeconfig, agentKubeconfig, kubectl, examplePolicy, stop };
  } catch (e) {
    await stop().catch(() => undefined);
    throw e;
  }
}
