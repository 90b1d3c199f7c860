import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import WebSocket, { WebSocketServer } from 'ws';
import { until } from '../helpers/processes.js';

// No kubelet runs on this machine, so a real kube-apiserver cannot complete an
// exec. This peer stands in for it behind an agent: it speaks the upgrade the
// way the API server does for exec (a WebSocket with the v5.channel.k8s.io
// subprotocol, channel byte first) and records what reached it.

export interface ExecPeer {
  /** The upgrade requests that reached the peer, as the agent sent them. */
  readonly seen: IncomingMessage[];
  /** Frames the peer could not read: a tunnel that corrupts a message shows here. */
  readonly errors: Error[];
  /** A kubeconfig for the agent: the peer over plain HTTP, with `saToken` as the agent's credentials. */
  readonly kubeconfig: string;
  close(): Promise<void>;
}

/**
 * Greets on stdout (channel 1) with "ready\n", answers every stdin message
 * (channel 0) upper-cased on stdout, and closes with 1000 after "exit".
 */
export async function startExecPeer(dir: string, saToken: string): Promise<ExecPeer> {
  const seen: IncomingMessage[] = [];
  const errors: Error[] = [];
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (p) => (p.has('v5.channel.k8s.io') ? 'v5.channel.k8s.io' : false) });
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => {
    seen.push(req);
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', (e) => errors.push(e));
      ws.send(Buffer.from([1, ...Buffer.from('ready\n')]));
      ws.on('message', (m: Buffer) => {
        if (m[0] === 0) ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(m.subarray(1).toString().toUpperCase())]));
        if (m.subarray(1).toString() === 'exit') ws.close(1000);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const kubeconfig = join(dir, `exec-peer-${port}-kubeconfig`);
  // Plain HTTP with a token: @kubernetes/client-node sends it only when told TLS is not checked.
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: peer, cluster: {server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: agent, user: {token: ${saToken}}}]\ncontexts: [{name: peer, context: {cluster: peer, user: agent}}]\ncurrent-context: peer\n`,
  );
  return {
    seen,
    errors,
    kubeconfig,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Where an exec through the proxy to the peer is, and how to be let in (as kubectl exec sends it). */
export interface ExecTarget {
  /** wss://…/api/v1/namespaces/<ns>/pods/<pod>/exec?… at the proxy. */
  url: string;
  caPem: string;
  authorization: string;
}

/**
 * Holds the peer's conversation through the proxy as a job's kubectl exec would: the greeting,
 * an echo, a message larger than one frame of the tunnel (chunking both ways), then "exit".
 * Resolves with the subprotocol the proxy agreed to and the close code the peer's close arrived with.
 */
export async function execThrough(t: ExecTarget): Promise<{ protocol: string; closeCode: number }> {
  const ws = new WebSocket(t.url, ['v5.channel.k8s.io'], { ca: t.caPem, headers: { authorization: t.authorization } });
  const got: string[] = [];
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  ws.on('message', (m: Buffer) => got.push(`${m[0]}:${m.subarray(1).toString()}`));
  await new Promise<void>((resolve, reject) => {
    ws.on('open', () => resolve());
    ws.on('error', reject);
  });
  const stdin = (text: string) => ws.send(Buffer.concat([Buffer.from([0]), Buffer.from(text)]));
  try {
    await until(() => got.includes('1:ready\n') || undefined, 10_000, 'the greeting');
    stdin('echo hello');
    await until(() => got.includes('1:ECHO HELLO') || undefined, 10_000, 'the echo');
    const big = 'x'.repeat(300_000);
    stdin(big);
    await until(() => got.includes(`1:${big.toUpperCase()}`) || undefined, 20_000, 'the large echo');
    stdin('exit');
    return { protocol: ws.protocol, closeCode: await closed };
  } finally {
    ws.terminate();
  }
}
