import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { tempDir } from '../helpers/processes.js';
import { startCiEnv, type CiEnv } from './env.js';
import { execThrough, startExecPeer, type ExecPeer } from './exec-peer.js';

// Upgrade requests (exec, attach, port-forward) through the CI tunnel, to a
// peer standing in for the API server's exec (exec-peer.ts). Proven here: the
// 101 and the bytes both ways through server and agent, the impersonation
// headers on the upgrade request, and no credentials of the job reaching the cluster.

let peer: ExecPeer;
let env: CiEnv;

beforeAll(async () => {
  peer = await startExecPeer(tempDir('verdict-ci-peer-'), 'agent-sa-token');
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/app\n      access_as: {ci_job: {}}\n', agentKubeconfig: peer.kubeconfig });
}, 120_000);

afterAll(async () => {
  await env?.stop();
  await peer?.close();
});

describe('upgrade requests through the CI tunnel (a peer in place of the kubelet)', () => {
  it("pipes an exec WebSocket both ways, impersonating the job with the agent's credentials", async () => {
    const token = env.jobToken({ project: 'shop/app' });
    const url = `${env.proxyUrl.replace('https:', 'wss:')}/api/v1/namespaces/ci/pods/web/exec?command=sh&stdin=true&stdout=true`;
    expect(await execThrough({ url, caPem: env.caPem, authorization: `Bearer ci:${env.agentId}:${token}` })).toEqual({
      protocol: 'v5.channel.k8s.io',
      closeCode: 1000,
    });
    expect(peer.errors).toEqual([]);
    const req = peer.seen.at(-1)!;
    expect(req.url).toBe('/api/v1/namespaces/ci/pods/web/exec?command=sh&stdin=true&stdout=true');
    expect(req.headers.authorization).toBe('Bearer agent-sa-token');
    expect(req.headers['impersonate-user']).toMatch(/^gitlab:ci_job:\d+$/);
    expect(req.headers['impersonate-group']).toContain('gitlab:project:shop/app');
    expect(JSON.stringify(req.headers)).not.toContain(token);
  });

  it('an upgrade refused by the proxy gets a Status, not a 101', async () => {
    const ws = new WebSocket(`${env.proxyUrl.replace('https:', 'wss:')}/api/v1/namespaces/ci/pods/web/exec`, ['v5.channel.k8s.io'], {
      ca: env.caPem,
      headers: { authorization: `Bearer ci:${env.agentId}:vdt_ci_unknown` },
    });
    const status = await new Promise<number>((resolve, reject) => {
      ws.on('error', reject);
      ws.on('unexpected-response', (_req, res) => {
        // Read to its end, so the connection closes cleanly rather than reset under the test's feet.
        res.resume();
        resolve(res.statusCode ?? 0);
      });
    });
    expect(status).toBe(401);
  });
});
