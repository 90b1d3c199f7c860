import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeCerts } from '../helpers/certs.js';
import { freePort, tempDir } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';

// A CI job's request that the agent cannot deliver to its cluster's API server: the answer says why in the words the
// Cilium policy watch and GitOps use (src/agent/kubernetes/explain.ts): the address and the kubeconfig for a refused
// connection, the CA for a certificate the agent cannot verify. Real server, real agent; the "API server" is a port
// nobody listens on, or an HTTPS server whose certificate another CA signed.

const dir = tempDir('verdict-ci-api-errors-');
const envs: CiEnv[] = [];
let https: Server | undefined;
afterAll(async () => {
  for (const e of envs) await e.stop();
  https?.close();
});

function kubeconfig(name: string, server: string, caFile: string): string {
  const file = join(dir, `${name}.kubeconfig`);
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
current-context: c
clusters: [{name: k, cluster: {server: "${server}", certificate-authority-data: ${readFileSync(caFile).toString('base64')}}}]
users: [{name: u, user: {token: not-checked}}]
contexts: [{name: c, context: {cluster: k, user: u}}]
`,
  );
  return file;
}

async function answer(agentKubeconfig: string): Promise<{ status: number; message: string }> {
  const env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/ops\n', agentName: 'qa', agentKubeconfig });
  envs.push(env);
  const token = env.jobToken({ project: 'shop/ops' });
  const r = await env.get('/api/v1/namespaces/default/configmaps', { authorization: `Bearer ci:${env.agentId}:${token}` });
  return { status: r.status, message: (JSON.parse(r.body) as { message: string }).message };
}

describe("CI tunnel: the agent cannot use its cluster's API server", () => {
  const ours = makeCerts(join(dir, 'ours'), 'the kubeconfig CA');

  it('a refused connection names the address and the kubeconfig', async () => {
    const port = await freePort();
    const file = kubeconfig('wrong-port', `https://127.0.0.1:${port}`, ours.ca);
    const r = await answer(file);
    expect(r.status).toBe(502);
    expect(r.message).toContain(
      `cannot reach the Kubernetes API server at https://127.0.0.1:${port} (credentials: kubeconfig ${file} (context c)): connect ECONNREFUSED 127.0.0.1:${port}; check that the API server is up and reachable from the agent's pod, and that this is its address`,
    );
  }, 60_000);

  it('a certificate another CA signed names the CA to check, not reachability', async () => {
    const theirs = makeCerts(join(dir, 'theirs'), 'another CA');
    https = createServer({ cert: readFileSync(theirs.serverCert), key: readFileSync(theirs.serverKey) }, (_req, res) => res.end('{}'));
    await new Promise<void>((r) => https!.listen(0, '127.0.0.1', r));
    const port = (https.address() as { port: number }).port;
    const file = kubeconfig('wrong-ca', `https://127.0.0.1:${port}`, ours.ca);
    const r = await answer(file);
    expect(r.status).toBe(502);
    expect(r.message).toContain(
      `cannot verify the certificate of the Kubernetes API server at https://127.0.0.1:${port} (credentials: kubeconfig ${file} (context c))`,
    );
    expect(r.message).toContain('certificate-authority-data');
    expect(r.message).not.toContain('cannot reach');
  }, 60_000);
});
