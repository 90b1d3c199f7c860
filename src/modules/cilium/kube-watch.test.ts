import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { KubeConnection } from '../../agent/kubernetes/connection.js';
import { PolicyWatcher } from './kube-watch.js';

// PolicyWatcher is tested against the real kube-apiserver in test/kube/
// (policy-watch, apiserver-restart, cilium-module, connection): paging, list
// then watch, ADDED/MODIFIED/DELETED, bookmarks, 410 after a restart, a
// frozen server, missing CRDs, RBAC errors, token rotation, namespaces.
//
// What stays here is a double for the one fault a real API server cannot be
// made to show: something else answering at its address (a proxy, an ingress,
// a wrong port) with 200 and a body that is not Kubernetes JSON.

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** Plain HTTP, no credentials: the watcher's requests are the same over https. */
function connection(url: string): KubeConnection {
  return { server: url, source: 'test double', requestOptions: async () => ({ headers: {} }) };
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

async function firstError(url: string): Promise<string> {
  const errors: string[] = [];
  const w = new PolicyWatcher({
    connection: connection(url),
    kinds: ['NetworkPolicy'],
    onChange: () => {},
    log: { info() {}, warn() {}, error: (o: object) => void errors.push(String((o as { error: string }).error)) },
    backoff: { initialMs: 10, maxMs: 20, jitter: false },
  });
  const done = w.run();
  const end = Date.now() + 5000;
  while (errors.length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  w.stop();
  await done;
  return errors[0] ?? 'no error';
}

describe('PolicyWatcher, faults only a double can show', () => {
  it('an HTML page where the API server should be is an error naming the path, retried', async () => {
    const url = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>Welcome to nginx</html>');
    });
    expect(await firstError(url)).toBe("/apis/networking.k8s.io/v1/networkpolicies?limit=500: the API server's answer is not JSON");
  });

  it('a watch stream with a line that is not JSON is an error, and the watch is opened again', async () => {
    let watches = 0;
    const url = await listen((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      if (!req.url!.includes('watch=1')) return res.end(JSON.stringify({ kind: 'NetworkPolicyList', metadata: { resourceVersion: '5' }, items: [] }));
      watches++;
      res.end('<html>proxy timeout</html>\n');
    });
    expect(await firstError(url)).toBe('/apis/networking.k8s.io/v1/networkpolicies: watch sent a line that is not JSON');
    expect(watches).toBeGreaterThan(0);
  });

  it('waitReady is false at once for a watcher that was stopped', async () => {
    const never = new PolicyWatcher({ connection: connection('http://127.0.0.1:1'), onChange: () => {} });
    never.stop();
    expect(await never.waitReady(60_000)).toBe(false);
  });
});
