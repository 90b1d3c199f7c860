import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { JobTokens } from '../../src/modules/ci-access/job-tokens.js';
import { tempDir, until } from '../helpers/processes.js';
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

  it('an exec open when its job token is revoked is closed', async () => {
    const token = env.jobToken({ project: 'shop/app' });
    const ws = new WebSocket(`${env.proxyUrl.replace('https:', 'wss:')}/api/v1/namespaces/ci/pods/web/exec?command=sh&stdin=true`, ['v5.channel.k8s.io'], {
      ca: env.caPem,
      headers: { authorization: `Bearer ci:${env.agentId}:${token}` },
    });
    const got: string[] = [];
    ws.on('message', (m: Buffer) => got.push(m.subarray(1).toString()));
    ws.on('error', () => undefined);
    const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
    try {
      await until(() => got.includes('ready\n') || undefined, 10_000, 'the greeting');
      const jobs = new JobTokens(env.server.db);
      const auth = jobs.authenticate(token);
      if ('error' in auth) throw new Error(auth.error);
      expect(jobs.revoke(auth.job.id)).toBe(true);
      // The outcome, not its speed (a second's poll, under whatever load the machine has); after the 101 there is no
      // Status to send, only the close.
      const r = await Promise.race([closed.then(() => 'closed'), new Promise((res) => setTimeout(() => res('still open'), 30_000))]);
      expect(r).toBe('closed');
    } finally {
      ws.terminate();
    }
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
