import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Agent } from 'node:http';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts } from '../../../test/helpers/certs.js';
import { type KubeConnection, kubeConnection } from './connection.js';
import { kubeAgent, MAX_POOLS } from './pool.js';
import { TLS_FILE_CHECK_MS } from './tls-material.js';

// Connections made from one kubeconfig, against a real HTTPS server that
// counts its TLS handshakes: requests of both share keep-alive connections;
// the token file is still read for every request; a CA file that changes is
// read again, and new connections are verified with the new CA. Past
// MAX_POOLS sets of material, the pool used least recently is retired.

const dir = mkdtempSync(join(tmpdir(), 'verdict-kube-pool-'));

/** A server certificate and key, and the PEM of the CA that signed it (a new CA each call). */
function serverCerts(name: string): { cert: Buffer; key: Buffer; ca: Buffer } {
  const c = makeCerts(join(dir, name), `${name} CA`);
  return { cert: readFileSync(c.serverCert), key: readFileSync(c.serverKey), ca: readFileSync(c.ca) };
}

let first: ReturnType<typeof serverCerts>;
let second: ReturnType<typeof serverCerts>;
let server: Server;
let handshakes = 0;
const sockets = new Set<Socket>();
const tokens: string[] = [];
const caFile = join(dir, 'ca.crt');
const tokenFile = join(dir, 'token');
let kubeconfig: string;

beforeAll(async () => {
  first = serverCerts('first');
  second = serverCerts('second');
  writeFileSync(caFile, first.ca);
  writeFileSync(tokenFile, 'one\n');
  server = createServer({ cert: first.cert, key: first.key }, (req, res) => {
    tokens.push(req.headers.authorization ?? '');
    res.setHeader('content-type', 'application/json');
    res.end('{"kind":"Namespace"}');
  });
  server.on('secureConnection', (s: Socket) => {
    handshakes++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(
    kubeconfig,
    `apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}", certificate-authority: ${caFile}}}]\nusers: [{name: u, user: {tokenFile: ${tokenFile}}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n`,
  );
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server?.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

async function get(conn: KubeConnection): Promise<number> {
  const { headers, ...opts } = await conn.requestOptions();
  return new Promise((resolve, reject) => {
    const req = request(`${conn.server}/api/v1/namespaces/default`, { ...opts, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('the keep-alive pool of the agent’s connections', () => {
  it('shares TLS connections between requests and between connections from the same kubeconfig; tokens are read per request', async () => {
    const a = kubeConnection({ kubeconfig });
    const b = kubeConnection({ kubeconfig });
    const before = handshakes;
    for (let round = 0; round < 5; round++) {
      if (round === 3) writeFileSync(tokenFile, 'two\n');
      const statuses = await Promise.all([a, b, a, b].map(get));
      expect(statuses).toEqual([200, 200, 200, 200]);
    }
    // 20 requests, at most 4 at a time, from two connections.
    expect(handshakes - before).toBeLessThanOrEqual(4);
    expect(tokens.slice(-8)).toEqual(Array(8).fill('Bearer two'));
    expect((await a.requestOptions()).agent).toBe((await b.requestOptions()).agent);
  });

  it('reads a CA file again when it changes (a rotated in-cluster CA), and verifies new connections with it', async () => {
    const conn = kubeConnection({ kubeconfig });
    expect(await get(conn)).toBe(200);
    const old = (await conn.requestOptions()).agent;
    // The server changes certificate and drops its connections: the next request needs a handshake, verified with the new CA.
    server.setSecureContext({ cert: second.cert, key: second.key });
    for (const s of sockets) s.destroy();
    writeFileSync(caFile, second.ca);
    await new Promise((resolve) => setTimeout(resolve, TLS_FILE_CHECK_MS + 100));
    const before = handshakes;
    expect(await get(conn)).toBe(200);
    expect(handshakes - before).toBe(1);
    expect((await conn.requestOptions()).agent).not.toBe(old);
  });

  it('retires the least recently used pool, not the first made, when one more set of material comes', () => {
    const noProxy = () => {
      throw new Error('no proxy here');
    };
    const material = Array.from({ length: MAX_POOLS + 1 }, (_, i) => Object.freeze({ ca: Buffer.from(`ca ${i}`) }));
    const agents = material.slice(0, MAX_POOLS).map((m) => kubeAgent('https:', m, noProxy));
    // Node's agent closes a connection whose request ends when keepAlive is off: that is how a pool is retired.
    const keepsAlive = () => agents.map((a) => (a as Agent & { keepAlive: boolean }).keepAlive);
    expect(keepsAlive()).toEqual(agents.map(() => true));
    // The first pool made is used again: the second is now the least recently used.
    expect(kubeAgent('https:', material[0]!, noProxy)).toBe(agents[0]);
    kubeAgent('https:', material[MAX_POOLS]!, noProxy);
    expect(keepsAlive()).toEqual(agents.map((_, i) => i !== 1));
    expect(kubeAgent('https:', material[0]!, noProxy)).toBe(agents[0]);
    expect(kubeAgent('https:', material[1]!, noProxy)).not.toBe(agents[1]);
  });
});
