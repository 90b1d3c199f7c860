import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Backoff, sleep, type BackoffOptions } from '../../shared/retry/backoff.js';
import { parsePolicyObject, type PolicyLoadError } from './policy/parse.js';
import { policyId, type Policy, type PolicyKind } from './policy/policy.js';

// Network policies straight from the Kubernetes API server, for an agent
// running in the cluster: list every policy resource (paginated), then watch
// from the list's resourceVersion, keep the set current through ADDED,
// MODIFIED and DELETED events, relist when the server says the version is gone
// (410), and re-watch from the last version seen after a dropped connection.
// Uses node's http(s) directly: fetch cannot take a private CA without extra
// packages, and a watch is one long streamed response of JSON lines.

export interface KubeConnection {
  /** https://host:port of the API server */
  server: string;
  token?: string;
  /** Read before every request: projected service account tokens rotate. */
  tokenFile?: string;
  /** PEM CA bundle the server certificate must chain to */
  ca?: string | Buffer;
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** The connection a pod gets: KUBERNETES_SERVICE_HOST/PORT and the mounted service account. */
export function inClusterConnection(env: NodeJS.ProcessEnv = process.env, dir = SA_DIR): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  if (!host) throw new Error('not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set); give the policies as files instead, or run the agent in the cluster');
  let ca: Buffer;
  try {
    ca = readFileSync(`${dir}/ca.crt`);
  } catch {
    throw new Error(`cannot read ${dir}/ca.crt; mount the service account token (automountServiceAccountToken: true)`);
  }
  const h = host.includes(':') ? `[${host}]` : host;
  return { server: `https://${h}:${port}`, tokenFile: `${dir}/token`, ca };
}

interface Resource {
  kind: PolicyKind;
  /** API path prefix, and the plural */
  group: string;
  plural: string;
  namespaced: boolean;
}

export const POLICY_RESOURCES: readonly Resource[] = [
  { kind: 'CiliumNetworkPolicy', group: '/apis/cilium.io/v2', plural: 'ciliumnetworkpolicies', namespaced: true },
  { kind: 'CiliumClusterwideNetworkPolicy', group: '/apis/cilium.io/v2', plural: 'ciliumclusterwidenetworkpolicies', namespaced: false },
  { kind: 'NetworkPolicy', group: '/apis/networking.k8s.io/v1', plural: 'networkpolicies', namespaced: true },
];

interface WatchLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug?(obj: object, msg: string): void;
}

const SILENT: WatchLog = { info() {}, warn() {}, error() {} };

export interface PolicySnapshot {
  policies: Policy[];
  errors: PolicyLoadError[];
}

export interface PolicyWatchOptions {
  connection: KubeConnection;
  /** Called with the whole set after the first complete list, then after each burst of changes. */
  onChange: (snapshot: PolicySnapshot) => void;
  /**
   * Watch namespaced policies of these namespaces only (for an agent whose
   * RBAC does not reach the whole cluster). Allows of policies elsewhere are
   * then unknown; prefer cluster-wide read access.
   */
  namespaces?: readonly string[];
  kinds?: readonly PolicyKind[];
  log?: WatchLog;
  backoff?: BackoffOptions;
  /** Changes within this window are delivered together (default 200 ms). */
  debounceMs?: number;
  pageSize?: number;
  /** Server-side watch timeout; the watch is then renewed from the last version (default 300 s). */
  watchTimeoutSeconds?: number;
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly reason: string, message: string) {
    super(message);
  }
}

class GoneError extends Error {}

interface Stream {
  resource: Resource;
  namespace: string | null;
  path: string;
  items: Map<string, { policy?: Policy; error?: PolicyLoadError }>;
  listed: boolean;
  resourceVersion: string;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function meta(o: unknown): { name: string; namespace: string; resourceVersion: string } {
  const m = isObj(o) && isObj(o.metadata) ? o.metadata : {};
  return {
    name: typeof m.name === 'string' ? m.name : '',
    namespace: typeof m.namespace === 'string' ? m.namespace : '',
    resourceVersion: typeof m.resourceVersion === 'string' ? m.resourceVersion : '',
  };
}

export class PolicyWatcher {
  private readonly streams: Stream[];
  private readonly log: WatchLog;
  private readonly abort = new AbortController();
  private readonly active = new Set<{ destroy(): void }>();
  private timer: NodeJS.Timeout | undefined;
  private readyResolve!: () => void;
  private emitted = false;
  /** Resolves once every resource has been listed (or found missing) and the first snapshot delivered. */
  readonly ready: Promise<void>;

  constructor(private readonly opts: PolicyWatchOptions) {
    this.log = opts.log ?? SILENT;
    this.ready = new Promise((r) => (this.readyResolve = r));
    const kinds = new Set(opts.kinds ?? POLICY_RESOURCES.map((r) => r.kind));
    this.streams = [];
    for (const resource of POLICY_RESOURCES) {
      if (!kinds.has(resource.kind)) continue;
      const nss = resource.namespaced && opts.namespaces && opts.namespaces.length > 0 ? opts.namespaces : [null];
      for (const ns of nss) {
        const path = ns === null ? `${resource.group}/${resource.plural}` : `${resource.group}/namespaces/${encodeURIComponent(ns)}/${resource.plural}`;
        this.streams.push({ resource, namespace: ns, path, items: new Map(), listed: false, resourceVersion: '' });
      }
    }
  }

  /** Runs until stop(); never rejects. */
  async run(): Promise<void> {
    await Promise.all(this.streams.map((s) => this.loop(s)));
  }

  /**
   * Waits until every resource has been listed once (ready), for at most `ms`.
   * True when ready; false on timeout, stop() or `signal`. Matching flows
   * before that would judge them against a partial policy set (the original
   * agent lost the drops it saw before its policy sync).
   */
  async waitReady(ms: number, signal?: AbortSignal): Promise<boolean> {
    if (this.emitted) return true;
    let timer: NodeJS.Timeout | undefined;
    const stops = [this.abort.signal, ...(signal ? [signal] : [])];
    const onAbort: (() => void)[] = [];
    try {
      return await Promise.race([
        this.ready.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), ms);
          for (const s of stops) {
            if (s.aborted) resolve(false);
            const f = () => resolve(false);
            s.addEventListener('abort', f, { once: true });
            onAbort.push(() => s.removeEventListener('abort', f));
          }
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
      for (const f of onAbort) f();
    }
  }

  stop(): void {
    this.abort.abort();
    for (const r of this.active) r.destroy();
    if (this.timer) clearTimeout(this.timer);
  }

  snapshot(): PolicySnapshot {
    const byId = new Map<string, Policy>();
    const errors: PolicyLoadError[] = [];
    for (const s of this.streams) {
      for (const it of s.items.values()) {
        if (it.policy) byId.set(policyId(it.policy), it.policy);
        if (it.error) errors.push(it.error);
      }
    }
    const policies = [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, p]) => p);
    return { policies, errors };
  }

  private changed(): void {
    if (!this.streams.every((s) => s.listed)) return;
    if (!this.emitted) {
      this.emitted = true;
      this.deliver();
      this.readyResolve();
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.deliver();
    }, this.opts.debounceMs ?? 200);
  }

  private deliver(): void {
    if (this.abort.signal.aborted) return;
    try {
      this.opts.onChange(this.snapshot());
    } catch (e) {
      this.log.error({ error: (e as Error).message }, 'Policy update handler failed');
    }
  }

  private async loop(s: Stream): Promise<void> {
    const backoff = new Backoff(this.opts.backoff ?? { initialMs: 1000, maxMs: 60_000, jitter: true, resetAfterMs: 600_000 });
    const signal = this.abort.signal;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.list(s);
          needList = false;
          this.changed();
        }
        await this.watch(s);
        // A watch that ran and ended normally: renew it from the last version seen.
        backoff.reset();
        continue;
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof GoneError) {
          this.log.info({ resource: s.path }, 'Policy watch expired (410 Gone); listing again');
          needList = true;
          continue;
        }
        // An HTTP error (unlike a dropped connection) means the watch position is no good: list again.
        if (e instanceof ApiError) needList = true;
        if (e instanceof ApiError && e.status === 404) {
          // The CRD is not installed (no Cilium): nothing to watch now; look again later.
          const had = s.items.size > 0;
          s.items = new Map();
          if (!s.listed || had) {
            s.listed = true;
            this.changed();
          }
          this.log.warn({ resource: s.path }, `${s.resource.kind} is not served by this API server (CRD not installed?); checking again later`);
          await sleep(this.opts.backoff?.maxMs ?? 60_000, signal);
          continue;
        }
        const hint = e instanceof ApiError && (e.status === 401 || e.status === 403)
          ? `; the agent's service account needs get, list and watch on ${s.resource.plural}${s.namespace ? ` in ${s.namespace}` : ' cluster-wide'}`
          : '';
        const delay = backoff.next();
        this.log.error({ error: `${(e as Error).message}${hint}`, resource: s.path, retry_ms: delay }, 'Policy list/watch failed; retrying');
        await sleep(delay, signal);
      }
    }
  }

  private upsert(s: Stream, obj: unknown): void {
    const m = meta(obj);
    const key = `${m.namespace}/${m.name}`;
    const source = `k8s:${s.resource.kind}/${m.namespace ? `${m.namespace}/` : ''}${m.name}`;
    const r = parsePolicyObject(obj, source, { kindHint: s.resource.kind });
    if (r === null || 'skipped' in r) return;
    if ('error' in r) {
      this.log.warn({ error: r.error.message }, 'Skipped a policy that cannot be parsed; the others keep working');
      s.items.set(key, { error: r.error });
    } else s.items.set(key, { policy: r.policy });
  }

  private async list(s: Stream): Promise<void> {
    const items = new Map<string, { policy?: Policy; error?: PolicyLoadError }>();
    const previous = s.items;
    s.items = items;
    let cont = '';
    try {
      do {
        const q = new URLSearchParams({ limit: String(this.opts.pageSize ?? 500) });
        if (cont) q.set('continue', cont);
        const body = await this.getJson(`${s.path}?${q}`);
        if (!isObj(body) || !Array.isArray(body.items)) throw new Error(`${s.path}: the API server answered with no items list`);
        for (const it of body.items) this.upsert(s, it);
        const lm = isObj(body.metadata) ? body.metadata : {};
        cont = typeof lm.continue === 'string' ? lm.continue : '';
        s.resourceVersion = typeof lm.resourceVersion === 'string' ? lm.resourceVersion : s.resourceVersion;
      } while (cont);
    } catch (e) {
      // Keep serving the last complete list until a new one succeeds.
      s.items = previous;
      throw e;
    }
    s.listed = true;
    this.log.info({ resource: s.path, count: items.size }, 'Listed network policies');
  }

  private async watch(s: Stream): Promise<void> {
    const q = new URLSearchParams({
      watch: '1',
      resourceVersion: s.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(this.opts.watchTimeoutSeconds ?? 300),
    });
    const res = await this.open(`${s.path}?${q}`, ((this.opts.watchTimeoutSeconds ?? 300) + 60) * 1000);
    res.setEncoding('utf8');
    let buf = '';
    for await (const chunk of res as AsyncIterable<string>) {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) this.event(s, line);
      }
    }
  }

  private event(s: Stream, line: string): void {
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      throw new Error(`${s.path}: watch sent a line that is not JSON`);
    }
    if (!isObj(ev)) return;
    const type = ev.type;
    const obj = ev.object;
    if (type === 'ERROR') {
      const code = isObj(obj) ? obj.code : undefined;
      if (code === 410) throw new GoneError();
      throw new ApiError(typeof code === 'number' ? code : 500, isObj(obj) && typeof obj.reason === 'string' ? obj.reason : '', `watch error: ${isObj(obj) && typeof obj.message === 'string' ? obj.message : 'unknown'}`);
    }
    const m = meta(obj);
    if (m.resourceVersion) s.resourceVersion = m.resourceVersion;
    if (type === 'BOOKMARK') return;
    if (type === 'ADDED' || type === 'MODIFIED') this.upsert(s, obj);
    else if (type === 'DELETED') s.items.delete(`${m.namespace}/${m.name}`);
    else return;
    this.changed();
  }

  private async getJson(path: string): Promise<unknown> {
    const res = await this.open(path, 60_000);
    res.setEncoding('utf8');
    let text = '';
    for await (const chunk of res as AsyncIterable<string>) text += chunk;
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`${path}: the API server's answer is not JSON`);
    }
  }

  private token(): string | undefined {
    const c = this.opts.connection;
    if (c.tokenFile) return readFileSync(c.tokenFile, 'utf8').trim();
    return c.token;
  }

  /** GET with auth; rejects with ApiError for non-200 answers (410 as GoneError). */
  private open(path: string, idleMs: number): Promise<IncomingMessage> {
    const c = this.opts.connection;
    const url = new URL(path, c.server);
    const token = this.token();
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'verdict-agent' };
    if (token) headers.authorization = `Bearer ${token}`;
    const https = url.protocol === 'https:';
    return new Promise((resolve, reject) => {
      const req = (https ? httpsRequest : httpRequest)(url, { method: 'GET', headers, ...(https && c.ca ? { ca: c.ca } : {}) }, (res) => {
        if (res.statusCode === 200) {
          resolve(res);
          return;
        }
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d.length < 65536 ? d : ''));
        res.on('end', () => {
          this.active.delete(req);
          if (res.statusCode === 410) return reject(new GoneError());
          let reason = '';
          let message = body.slice(0, 300);
          try {
            const st = JSON.parse(body) as Obj;
            reason = typeof st.reason === 'string' ? st.reason : '';
            message = typeof st.message === 'string' ? st.message : message;
          } catch {
            /* not a Status object */
          }
          reject(new ApiError(res.statusCode ?? 0, reason, `${url.pathname}: HTTP ${res.statusCode}${reason ? ` ${reason}` : ''}: ${message}`));
        });
      });
      this.active.add(req);
      req.on('close', () => this.active.delete(req));
      // A watch that hears nothing (not even a bookmark) for this long is a dead connection.
      req.setTimeout(idleMs, () => req.destroy(new Error(`${url.pathname}: no data for ${Math.round(idleMs / 1000)} s`)));
      req.on('error', reject);
      req.end();
    });
  }
}
