import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { inClusterConnection, PolicyWatcher, type PolicySnapshot } from './kube-watch.js';
import { policyId } from './policy/policy.js';

// No API server can run here, so the watcher talks to a simulated one: a
// node http server that implements what the watcher uses of the Kubernetes
// API (paginated list with resourceVersion, watch streams of JSON lines with
// ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, 410 after compaction, Status
// bodies for errors, bearer tokens). Plain HTTP: TLS is node's https with the
// cluster CA, not exercised here.

type Obj = Record<string, any>;

const PATHS: Record<string, { kind: string; apiVersion: string }> = {
  '/apis/cilium.io/v2/ciliumnetworkpolicies': { kind: 'CiliumNetworkPolicy', apiVersion: 'cilium.io/v2' },
  '/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies': { kind: 'CiliumClusterwideNetworkPolicy', apiVersion: 'cilium.io/v2' },
  '/apis/networking.k8s.io/v1/networkpolicies': { kind: 'NetworkPolicy', apiVersion: 'networking.k8s.io/v1' },
};

class FakeApiServer {
  readonly server: Server;
  rv = 100;
  /** Versions below this were compacted: watching from them gets 410. */
  compactedBelow = 0;
  token = 's3cret';
  readonly missing = new Set<string>();
  readonly store = new Map<string, Map<string, Obj>>();
  readonly requests: string[] = [];
  readonly watchers = new Set<{ path: string; ns: string | null; res: ServerResponse }>();
  forbidden = false;

  constructor() {
    for (const p of Object.keys(PATHS)) this.store.set(p, new Map());
    this.server = createServer((req, res) => this.handle(req, res));
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    const a = this.server.address() as { port: number };
    return `http://127.0.0.1:${a.port}`;
  }

  close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.server.closeAllConnections();
    return new Promise((r) => this.server.close(() => r()));
  }

  private status(res: ServerResponse, code: number, reason: string, message: string): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code }));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(req.url!);
    if (req.headers.authorization !== `Bearer ${this.token}`) return this.status(res, 401, 'Unauthorized', 'Unauthorized');
    const url = new URL(req.url!, 'http://x');
    // A namespaced request (/apis/<group>/<version>/namespaces/<ns>/<plural>) serves that namespace's part of the collection.
    const nsPath = /^(\/apis\/[^/]+\/[^/]+)\/namespaces\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const path = nsPath ? `${nsPath[1]}/${nsPath[3]}` : url.pathname;
    const ns = nsPath ? decodeURIComponent(nsPath[2]!) : null;
    if (this.forbidden) return this.status(res, 403, 'Forbidden', `cannot list resource at ${url.pathname}`);
    if (!PATHS[path] || this.missing.has(path)) return this.status(res, 404, 'NotFound', 'the server could not find the requested resource');
    const items = [...this.store.get(path)!.values()].filter((o) => ns === null || o.metadata.namespace === ns);
    if (url.searchParams.get('watch') === '1') {
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      const from = Number(url.searchParams.get('resourceVersion'));
      if (from < this.compactedBelow) {
        res.end(`${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: `too old resource version: ${from}` } })}\n`);
        return;
      }
      const w = { path, ns, res };
      this.watchers.add(w);
      res.on('close', () => this.watchers.delete(w));
      return;
    }
    const limit = Number(url.searchParams.get('limit') ?? '500');
    const start = Number(url.searchParams.get('continue') || '0');
    const page = items.slice(start, start + limit);
    const cont = start + limit < items.length ? String(start + limit) : undefined;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: `${PATHS[path]!.kind}List`, metadata: { resourceVersion: String(this.rv), ...(cont ? { continue: cont } : {}) }, items: page }));
  }

  put(path: string, obj: Obj, type: 'ADDED' | 'MODIFIED' = 'ADDED'): void {
    obj.metadata.resourceVersion = String(++this.rv);
    const { kind, apiVersion } = PATHS[path]!;
    const full = { apiVersion, kind, ...obj };
    this.store.get(path)!.set(`${obj.metadata.namespace ?? ''}/${obj.metadata.name}`, full);
    this.send(path, type, full);
  }

  remove(path: string, ns: string, name: string): void {
    const key = `${ns}/${name}`;
    const obj = this.store.get(path)!.get(key)!;
    this.store.get(path)!.delete(key);
    obj.metadata.resourceVersion = String(++this.rv);
    this.send(path, 'DELETED', obj);
  }

  bookmark(path: string): void {
    this.send(path, 'BOOKMARK', { kind: PATHS[path]!.kind, metadata: { resourceVersion: String(++this.rv) } });
  }

  private send(path: string, type: string, object: Obj): void {
    for (const w of this.watchers) if (w.path === path && (w.ns === null || w.ns === object.metadata.namespace)) w.res.write(`${JSON.stringify({ type, object })}\n`);
  }

  dropWatches(): void {
    for (const w of this.watchers) w.res.socket?.destroy();
  }
}

const CNP = '/apis/cilium.io/v2/ciliumnetworkpolicies';
const CCNP = '/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies';
const KNP = '/apis/networking.k8s.io/v1/networkpolicies';

const cnp = (name: string, ns: string, port = '80') => ({ metadata: { name, namespace: ns, annotations: { 'app.gitlab.com/alert': 'true' } }, spec: { endpointSelector: { matchLabels: { app: name } }, ingress: [{ toPorts: [{ ports: [{ port }] }] }] } });

async function until<T>(get: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function setup(init: (api: FakeApiServer) => void = () => {}, opts: Partial<ConstructorParameters<typeof PolicyWatcher>[0]> = {}) {
  const api = new FakeApiServer();
  init(api);
  const server = await api.listen();
  const snapshots: PolicySnapshot[] = [];
  const logs: string[] = [];
  const log = { info: (_: object, m: string) => logs.push(m), warn: (o: object, m: string) => logs.push(`${m} ${JSON.stringify(o)}`), error: (o: object, m: string) => logs.push(`${m} ${JSON.stringify(o)}`) };
  const w = new PolicyWatcher({ connection: { server, token: api.token }, onChange: (s) => snapshots.push(s), log, backoff: { initialMs: 10, maxMs: 40, jitter: false }, debounceMs: 5, pageSize: 2, ...opts });
  const done = w.run();
  cleanup.push(async () => {
    w.stop();
    await done;
    await api.close();
  });
  const names = () => snapshots.at(-1)?.policies.map((p) => policyId(p)) ?? [];
  return { api, w, snapshots, names, logs };
}

describe('PolicyWatcher against a simulated API server', () => {
  it('lists every resource across pages before the first snapshot; bad policies are reported by name', async () => {
    const { w, snapshots, names, api } = await setup((api) => {
      for (const n of ['a', 'b', 'c', 'd', 'e']) api.put(CNP, cnp(n, 'shop'));
      api.put(CCNP, { metadata: { name: 'cw' }, spec: { endpointSelector: {}, egressDeny: [{ toCIDR: ['169.254.169.254/32'] }], enableDefaultDeny: { egress: false } } });
      api.put(KNP, { metadata: { name: 'np', namespace: 'db' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } });
      api.put(CNP, cnp('broken', 'shop', '99999'));
    });
    await w.ready;
    expect(snapshots).toHaveLength(1);
    expect(names()).toEqual([
      'CiliumClusterwideNetworkPolicy/cw',
      'CiliumNetworkPolicy/shop/a', 'CiliumNetworkPolicy/shop/b', 'CiliumNetworkPolicy/shop/c', 'CiliumNetworkPolicy/shop/d', 'CiliumNetworkPolicy/shop/e',
      'NetworkPolicy/db/np',
    ]);
    expect(snapshots[0]!.errors.map((e) => [e.source, e.name])).toEqual([['k8s:CiliumNetworkPolicy/shop/broken', 'CiliumNetworkPolicy/shop/broken']]);
    expect(snapshots[0]!.policies.every((p) => p.alert || p.kind === 'NetworkPolicy' || p.kind === 'CiliumClusterwideNetworkPolicy')).toBe(true);
    // 6 CNPs in pages of 2
    expect(api.requests.filter((r) => r.startsWith(CNP) && !r.includes('watch=1'))).toHaveLength(3);
    expect(api.requests.some((r) => r.startsWith(`${CNP}?limit=2&continue=2`))).toBe(true);
  });

  it('follows ADDED, MODIFIED and DELETED events', async () => {
    const { api, w, names, snapshots } = await setup((api) => api.put(CNP, cnp('a', 'shop')));
    await w.ready;
    await until(() => (api.watchers.size === 3 ? true : undefined), 'three watches');
    api.put(CNP, cnp('b', 'shop'));
    await until(() => (names().includes('CiliumNetworkPolicy/shop/b') ? true : undefined), 'ADDED b');
    api.put(CNP, cnp('b', 'shop', 'not a port'), 'MODIFIED');
    await until(() => (snapshots.at(-1)!.errors.length === 1 ? true : undefined), 'MODIFIED b to a broken policy');
    expect(names()).toEqual(['CiliumNetworkPolicy/shop/a']);
    api.remove(CNP, 'shop', 'a');
    api.put(KNP, { metadata: { name: 'np', namespace: 'db' }, spec: { podSelector: {} } });
    await until(() => (names().join() === 'NetworkPolicy/db/np' ? true : undefined), 'DELETED a, ADDED np');
  });

  it('re-watches from the last version seen (bookmarks included) after a dropped connection', async () => {
    const { api, w, names } = await setup((api) => api.put(CNP, cnp('a', 'shop')));
    await w.ready;
    await until(() => (api.watchers.size === 3 ? true : undefined), 'watches');
    api.bookmark(CNP);
    const rv = api.rv;
    await new Promise((r) => setTimeout(r, 50));
    api.dropWatches();
    await until(() => (api.requests.some((r) => r.startsWith(CNP) && r.includes('watch=1') && r.includes(`resourceVersion=${rv}`)) ? true : undefined), `a watch from ${rv}`);
    await until(() => (api.watchers.size === 3 ? true : undefined), 'watches again');
    api.put(CNP, cnp('late', 'shop'));
    await until(() => (names().includes('CiliumNetworkPolicy/shop/late') ? true : undefined), 'event after reconnect');
  });

  it('lists again when the watch version is gone (410)', async () => {
    const { api, w, names, logs } = await setup((api) => api.put(CNP, cnp('a', 'shop')));
    await w.ready;
    await until(() => (api.watchers.size === 3 ? true : undefined), 'watches');
    // While the agent is disconnected the store changes and old versions are compacted.
    api.dropWatches();
    api.store.get(CNP)!.clear();
    api.put(CNP, cnp('fresh', 'shop'));
    api.compactedBelow = api.rv + 1;
    api.rv++;
    await until(() => (names().join() === 'CiliumNetworkPolicy/shop/fresh' ? true : undefined), 'relisted set');
    expect(logs).toContain('Policy watch expired (410 Gone); listing again');
  });

  it('a missing CRD (no Cilium) does not hold back Kubernetes NetworkPolicies', async () => {
    const { w, names, logs } = await setup((api) => {
      api.missing.add(CNP);
      api.missing.add(CCNP);
      api.put(KNP, { metadata: { name: 'np', namespace: 'db' }, spec: { podSelector: {} } });
    });
    await w.ready;
    expect(names()).toEqual(['NetworkPolicy/db/np']);
    expect(logs.some((l) => l.startsWith('CiliumNetworkPolicy is not served by this API server'))).toBe(true);
  });

  it('says which permission is missing on 403, and recovers', async () => {
    const { api, w, names, logs } = await setup((api) => {
      api.forbidden = true;
      api.put(KNP, { metadata: { name: 'np', namespace: 'db' }, spec: { podSelector: {} } });
    });
    await until(() => (logs.some((l) => l.includes('needs get, list and watch on networkpolicies cluster-wide')) ? true : undefined), 'RBAC hint');
    api.forbidden = false;
    await w.ready;
    expect(names()).toEqual(['NetworkPolicy/db/np']);
  });

  it('reads the token file before every request (rotation), and watches only the given namespaces', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'verdict-sa-'));
    await writeFile(join(dir, 'token'), 's3cret\n');
    const api = new FakeApiServer();
    api.put(CNP, cnp('a', 'shop'));
    api.put(CNP, cnp('elsewhere', 'other'));
    const server = await api.listen();
    const snapshots: PolicySnapshot[] = [];
    const w = new PolicyWatcher({ connection: { server, tokenFile: join(dir, 'token') }, namespaces: ['shop'], kinds: ['CiliumNetworkPolicy'], onChange: (s) => snapshots.push(s), backoff: { initialMs: 10, maxMs: 20, jitter: false }, debounceMs: 5 });
    const done = w.run();
    cleanup.push(async () => {
      w.stop();
      await done;
      await api.close();
    });
    await w.ready;
    expect(api.requests[0]).toMatch(/^\/apis\/cilium\.io\/v2\/namespaces\/shop\/ciliumnetworkpolicies\?limit=500/);
    expect(snapshots.at(-1)!.policies.map((p) => policyId(p))).toEqual(['CiliumNetworkPolicy/shop/a']);
    // The token rotates: the server accepts only the new one, and the next request reads it from the file.
    await until(() => (api.watchers.size === 1 ? true : undefined), 'the watch');
    api.token = 'rotated';
    await writeFile(join(dir, 'token'), 'rotated\n');
    const before = api.requests.length;
    api.dropWatches();
    await until(() => (api.requests.length > before && api.watchers.size === 1 ? true : undefined), 'a watch with the new token');
    api.put(CNP, cnp('b', 'shop'));
    await until(() => (snapshots.at(-1)!.policies.length === 2 ? true : undefined), 'an event after the rotation');
  });

  it('waitReady: false while the list cannot complete, true once it has, false after stop', async () => {
    const { api, w } = await setup((api) => {
      api.forbidden = true;
      api.put(KNP, { metadata: { name: 'np', namespace: 'db' }, spec: { podSelector: {} } });
    });
    expect(await w.waitReady(100)).toBe(false);
    const ac = new AbortController();
    const pending = w.waitReady(60_000, ac.signal);
    ac.abort();
    expect(await pending).toBe(false);
    api.forbidden = false;
    expect(await w.waitReady(5000)).toBe(true);
    expect(await w.waitReady(0)).toBe(true);
    const never = new PolicyWatcher({ connection: { server: 'http://127.0.0.1:1' }, onChange: () => {} });
    never.stop();
    expect(await never.waitReady(60_000)).toBe(false);
  });

  it('inClusterConnection uses the service account mount and says what to do outside a pod', async () => {
    expect(() => inClusterConnection({})).toThrow(/not running in a Kubernetes pod/);
    const dir = await mkdtemp(join(tmpdir(), 'verdict-sa-'));
    await writeFile(join(dir, 'ca.crt'), 'PEM');
    expect(inClusterConnection({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir)).toEqual({ server: 'https://10.96.0.1:443', tokenFile: `${dir}/token`, ca: Buffer.from('PEM') });
    expect(inClusterConnection({ KUBERNETES_SERVICE_HOST: 'fd00::1' }, dir).server).toBe('https://[fd00::1]:443');
  });
});
