// What the agent's modules say when the Kubernetes API server cannot be used
// (src/agent/kubernetes/explain.ts), against a real API server: a token it
// does not accept (401: the credentials, not RBAC), a wrong port (the address)
// and a CA that did not sign its certificate (the CA), each naming the server
// and the kubeconfig the credentials come from.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { kubeConnection } from '../../src/agent/kubernetes/connection.js';
import { inventoryRef } from '../../src/modules/gitops/inventory.js';
import { KubeApi } from '../../src/modules/gitops/kube/api.js';
import { ProjectWorker } from '../../src/modules/gitops/worker.js';
import { makeCerts } from '../helpers/certs.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { capturingLogger } from '../helpers/logs.js';
import { freePort } from '../helpers/processes.js';
import { until, watch } from './policies.js';

let kube: Kube;
const scratch = mkdtempSync(join(tmpdir(), 'verdict-kube-errors-'));
beforeAll(async () => {
  kube = await startKube();
}, 300_000);
afterAll(async () => {
  await kube?.stop();
  rmSync(scratch, { recursive: true, force: true });
}, 60_000);

type Kubeconfig = {
  'current-context': string;
  clusters: { cluster: Record<string, string> }[];
  users: { user: Record<string, string> }[];
};

/** The admin kubeconfig with one thing broken, written to its own file. */
function broken(name: string, change: (k: Kubeconfig) => void): string {
  const k = parse(readFileSync(kube.kubeconfig, 'utf8')) as Kubeconfig;
  change(k);
  const file = join(scratch, `${name}.kubeconfig`);
  writeFileSync(file, stringify(k));
  return file;
}

const context = () => (parse(readFileSync(kube.kubeconfig, 'utf8')) as Kubeconfig)['current-context'];

/** The first error the Cilium policy watch logs with this kubeconfig. */
async function ciliumError(kubeconfig: string): Promise<string> {
  const w = watch(kubeconfig, { kinds: ['NetworkPolicy'] });
  try {
    const err = await until(() => w.logs.find((l) => l.level === 'error'), 'the policy watch error');
    expect(err.msg).toBe('Policy list/watch failed; retrying');
    expect(err.obj.retry_in_ms).toEqual(expect.any(Number));
    expect(err.obj).not.toHaveProperty('retry_ms');
    return String(err.obj.error);
  } finally {
    await w.stop();
  }
}

/** The error of GitOps' first sync of one ConfigMap with this kubeconfig. */
async function gitopsError(kubeconfig: string): Promise<string> {
  const { log, logs } = capturingLogger();
  const api = new KubeApi(kubeConnection({ kubeconfig }));
  const worker = new ProjectWorker({
    projectId: 'group/app',
    settings: {
      defaultNamespace: 'default',
      dryRun: 'none',
      prune: true,
      pruneTimeoutMs: 1000,
      propagation: 'foreground',
      inventoryPolicy: 'must_match',
      reconcileTimeoutMs: 1000,
    },
    api,
    inventory: inventoryRef('edge', 'group/app', 'default'),
    log,
    resyncIntervalMs: 60_000,
    backoff: { initialMs: 60_000, maxMs: 60_000, factor: 2, jitter: false },
  });
  const stop = new AbortController();
  const running = worker.run(stop.signal);
  try {
    worker.offer({
      commit: 'c1',
      projectId: 'group/app',
      files: [{ source: 'cm.yaml', data: Buffer.from('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n') }],
    });
    const failed = await until(() => logs.find((l) => l.msg === 'Synchronization failed'), 'the failed sync', 20_000);
    return String(failed.error);
  } finally {
    stop.abort();
    await running;
    api.close();
  }
}

const modules = { cilium: ciliumError, gitops: gitopsError };
/** The ClusterRole of deploy/agent/agent.yaml that each module's 403 points to. */
const ROLES = { cilium: 'verdict-agent-policy-reader', gitops: 'verdict-agent-gitops' };

describe.each(Object.entries(modules))('%s: Kubernetes API errors say what to fix', (_name, firstError) => {
  it('a token the API server does not accept (401) names the credentials, not RBAC', async () => {
    const file = broken('wrong-token', (k) => {
      k.users[0]!.user.token = 'not-a-token';
    });
    const error = await firstError(file);
    expect(error).toContain(
      `the Kubernetes API server at ${kube.server} did not accept the credentials (credentials: kubeconfig ${file} (context ${context()}))`,
    );
    expect(error).toContain('Unauthorized');
    expect(error).toContain('the token or client certificate is wrong, expired or revoked');
    expect(error).not.toContain('ClusterRole');
  }, 30_000);

  it('a refusal (403) points to the RBAC the module needs', async () => {
    const error = await firstError(kube.userKubeconfig);
    expect(error).toContain('forbidden');
    expect(error).toContain(`the ClusterRole ${ROLES[_name as keyof typeof ROLES]} in deploy/agent/agent.yaml`);
  }, 30_000);

  it('a wrong port names the address and the kubeconfig', async () => {
    const port = await freePort();
    const file = broken('wrong-port', (k) => {
      k.clusters[0]!.cluster.server = `https://127.0.0.1:${port}`;
    });
    const error = await firstError(file);
    expect(error).toContain(
      `cannot reach the Kubernetes API server at https://127.0.0.1:${port} (credentials: kubeconfig ${file} (context ${context()})): connect ECONNREFUSED 127.0.0.1:${port}; check that the API server is up and reachable`,
    );
  }, 30_000);

  it('a CA that did not sign the API server certificate names the CA to check', async () => {
    const other = makeCerts(join(scratch, `other-ca-${_name}`), 'another CA');
    const file = broken('wrong-ca', (k) => {
      const c = k.clusters[0]!.cluster;
      delete c['certificate-authority'];
      c['certificate-authority-data'] = Buffer.from(readFileSync(other.ca)).toString('base64');
    });
    const error = await firstError(file);
    expect(error).toContain(
      `cannot verify the certificate of the Kubernetes API server at ${kube.server} (credentials: kubeconfig ${file} (context ${context()}))`,
    );
    expect(error).toContain('certificate-authority-data');
  }, 30_000);
});
