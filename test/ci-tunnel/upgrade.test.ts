import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { startCiEnv, type CiEnv } from './env.js';

// Upgrade requests (exec, attach, port-forward) through the CI tunnel. No
// kubelet runs on this machine, so the real kube-apiserver cannot complete an
// exec: the agent is pointed at a peer that speaks the upgrade the way the API
// server does for exec (a WebSocket with the v5.channel.k8s.io subprotocol,
// channel byte first) and records what reached it. Proven here: the 101 and
// the bytes both ways through server and agent, the impersonation headers on
// the upgrade request, and no credentials of the job reaching the cluster.

let peer: Server;
let env: CiEnv;
const seen: IncomingMessage[] = [];

beforeAll(async () => {
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('v5.channel.k8s.io') ? 'v5.channel.k8s.io' : false) });
  peer = createServer((_req, res) => res.writeHead(404).end());
  peer.on('upgrade', (req, socket, head) => {
    seen.push(req);
    wss.handleUpgrade(req, socket, head, (ws) => {
      // stdout (channel 1) greets; every stdin message (channel 0) comes back upper-cased on stdout.
      ws.send(Buffer.from([1, ...Buffer.from('ready\n')]));
      ws.on('message', (m: Buffer) => {
        if (m[0] === 0) ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(m.subarray(1).toString().toUpperCase())]));
        if (m.subarray(1).toString() === 'exit') ws.close(1000);
      });
    });
  });
  await new Promise<void>((resolve) => peer.listen(0, '127.0.0.1', resolve));
  const port = (peer.address() as { port: number }).port;
  const dir = (await import('../helpers/processes.js')).tempDir('verdict-ci-peer-');
  const kubeconfig = join(dir, 'peer-kubeconfig');
  // Plain HTTP with a token: @kubernetes/client-node sends it only when told TLS is not checked.
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: peer, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: agent, user: {token: agent-sa-token}}]\ncontexts: [{name: peer, context: {cluster: peer, user: agent}}]\ncurrent-context: peer\n`,
  );
  env = await startCiEnv({ configYaml: 'ci_access:\n  projects:\n    - id: shop/app\n      access_as: {ci_job: {}}\n', agentKubeconfig: kubeconfig });
}, 120_000);

afterAll(async () => {
  await env?.stop();
  peer?.close();
});

describe('upgrade requests through the CI tunnel (a peer in place of the kubelet)', () => {
  it("pipes an exec WebSocket both ways, impersonating the job with the agent's credentials", async () => {
    const token = env.jobToken({ project: 'shop/app' });
    const url = `${env.proxyUrl.replace('https:', 'wss:')}/api/v1/namespaces/ci/pods/web/exec?command=sh&stdin=true&stdout=true`;
    const ws = new WebSocket(url, ['v5.channel.k8s.io'], { ca: env.caPem, headers: { authorization: `Bearer ci:${env.agentId}:${token}` } });
    const got: string[] = [];
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (m: Buffer) => got.push(`${m[0]}:${m.subarray(1).toString()}`));
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => resolve());
      ws.on('error', reject);
    });
    expect(ws.protocol).toBe('v5.channel.k8s.io');
    const until = async (pred: () => boolean) => {
      for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 25));
      expect(pred()).toBe(true);
    };
    await until(() => got.includes('1:ready\n'));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('echo hello')]));
    await until(() => got.includes('1:ECHO HELLO'));
    // A larger message than one frame of the tunnel, to see chunking both ways.
    const big = 'x'.repeat(300_000);
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(big)]));
    await until(() => got.includes(`1:${big.toUpperCase()}`));
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('exit')]));
    expect(await closed).toBe(1000);

    const req = seen.at(-1)!;
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
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });
});
