import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { KubeConnection } from '../../agent/kubernetes/connection.js';
import { kubeApiError, kubeApiStatus } from '../../agent/kubernetes/errors.js';
import { explainKubeError } from '../../agent/kubernetes/explain.js';
import { InFlight } from '../../agent/kubernetes/in-flight.js';
import { sleep, type BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import { parsePolicyObject, type PolicyLoadError } from './policy/parse.js';
import { policyId, type Policy, type PolicyKind } from './policy/policy.js';
import { isVerdictError } from '../../shared/errors.js';

// Network policies straight from the Kubernetes API server: list every policy
// resource (paginated), then watch from the list's resourceVersion with
// bookmarks, keep the set current through ADDED, MODIFIED and DELETED events,
// relist when the server says the version is gone (410), and re-watch from the
// last version seen after a dropped connection.
//
// The connection (credentials, CA, exec plugins) is the agent's shared one,
// loaded by @kubernetes/client-node; the requests are node's http(s) here, not
// the library's Watch/ListWatch: its Watch reports a failed watch by status
// text only ("Forbidden", dropping the Status message that names the missing
// verb and resource), skips lines that are not JSON silently, has no idle
// timeout, and its ListWatch neither paginates nor reconnects through
// retryLoop with backoff.

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

/** Where the agent's RBAC is written down, for the hint on 403. */
const RBAC_HINT = 'the ClusterRole verdict-agent-policy-reader in deploy/agent/agent.yaml grants it';

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
  /**
   * A watch that hears nothing (no event, no bookmark) for this long is a dead
   * connection (default: the watch timeout plus 60 s; the server sends a
   * bookmark at least a minute apart and 2 s before the timeout).
   */
  idleTimeoutMs?: number;
  /**
   * How often a kind the API server does not serve (its CRD is not installed) is looked
   * for again, at least (default 5 min): on a cluster without Cilium that is the normal
   * state, not a fault to retry quickly.
   */
  missingKindRecheckMs?: number;
}

/** Where Cilium's CRDs are, for a cluster that wants Cilium policies without the operator installing them. */
const CILIUM_CRDS = 'https://github.com/cilium/cilium/tree/main/pkg/k8s/apis/cilium.io/client/crds/v2';

interface Stream {
  resource: Resource;
  namespace: string | null;
  path: string;
  items: Map<string, { policy?: Policy; error?: PolicyLoadError }>;
  listed: boolean;
  resourceVersion: string;
  /** The API server answered 404 for the kind (no CRD): looked for again at the longer interval. */
  missing: boolean;
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
  private readonly active = new InFlight();
  /** Why a response was cut by the idle timeout: its stream itself only says "aborted". */
  private readonly idle = new WeakMap<IncomingMessage, Error>();
  private timer: NodeJS.Timeout | undefined;
  /** Kinds whose absence was logged: once per kind, however many streams (namespaces) and rechecks. */
  private readonly missingKinds = new Set<PolicyKind>();
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
        this.streams.push({ resource, namespace: ns, path, items: new Map(), listed: false, resourceVersion: '', missing: false });
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
    this.active.destroyAll();
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
    const signal = this.abort.signal;
    let needList = true;
    await retryLoop(
      {
        backoff: this.opts.backoff ?? { initialMs: 1000, maxMs: 60_000, jitter: true, resetAfterMs: 600_000 },
        signal,
        sleep: (delay, sig) => sleep(s.missing ? Math.max(delay, this.missingRecheckMs) : delay, sig).then(() => {}),
        onBackoff: (delay, e) => {
          if (e === undefined) return;
          if (kubeApiStatus(e) === 404) {
            this.logMissing(s, delay);
            return;
          }
          const rbac = `the agent's identity needs list and watch on ${s.resource.plural}.${s.resource.group.split('/')[2]}${s.namespace ? ` in namespace ${s.namespace}` : ' cluster-wide'} (${RBAC_HINT})`;
          this.log.error(
            { error: explainKubeError(e, this.opts.connection, rbac), resource: s.path, retry_in_ms: delay },
            'Policy list/watch failed; retrying',
          );
        },
      },
      async (progress) => {
        try {
          if (needList) {
            await this.list(s);
            needList = false;
            this.changed();
            progress();
          }
          const started = Date.now();
          const events = await this.watch(s, progress);
          // A watch that ran and ended (its timeout): renew it from the last
          // version seen. One that ends at once with nothing is a server in trouble.
          return events > 0 || Date.now() - started > 1000 ? 'now' : 'backoff';
        } catch (e) {
          if (signal.aborted) return 'done';
          if (kubeApiStatus(e) === 410) {
            this.log.info({ resource: s.path, resource_version: s.resourceVersion }, 'Policy watch expired (410 Gone); listing again');
            needList = true;
            return 'now';
          }
          // The position is still good after a refused or failed request (429 while a restarted
          // server fills its cache, 5xx, 401/403 until RBAC is fixed): watch from it again, as
          // client-go's reflector does, and let the server say 410 if it is too old. Relisting
          // on every such error would send every agent's full list at a recovering server.
          // Relist only when the resource vanished (404) or the version is ahead of the cache.
          if (kubeApiStatus(e) === 404 || (kubeApiStatus(e) !== undefined && /too large resource version/i.test((e as Error).message))) needList = true;
          if (kubeApiStatus(e) === 401) this.opts.connection.credentialsRejected?.();
          if (kubeApiStatus(e) === 404) {
            // The CRD is not installed (no Cilium): nothing to watch now; look again later.
            s.missing = true;
            const had = s.items.size > 0;
            s.items = new Map();
            if (!s.listed || had) {
              s.listed = true;
              this.changed();
            }
          }
          throw e;
        }
      },
    );
  }

  private get missingRecheckMs(): number {
    return this.opts.missingKindRecheckMs ?? 5 * 60_000;
  }

  /**
   * A kind the API server does not serve: a warning the first time for the kind, then debug, since on a
   * cluster with Kubernetes NetworkPolicies only (no Cilium) this is how it stays.
   */
  private logMissing(s: Stream, delay: number): void {
    const kind = s.resource.kind;
    const retryMs = Math.max(delay, this.missingRecheckMs);
    if (this.missingKinds.has(kind)) {
      this.log.debug?.({ resource: s.path, retry_in_ms: retryMs }, `${kind} is still not served by this API server; checking again later`);
      return;
    }
    this.missingKinds.add(kind);
    const others = this.streams.some((o) => o.resource.kind === 'NetworkPolicy') && kind !== 'NetworkPolicy' ? 'Kubernetes NetworkPolicies' : 'the other kinds';
    this.log.warn(
      { resource: s.path, retry_in_ms: retryMs },
      `${kind} is not served by this API server (CRD not installed); ${others} are still followed. For ${kind} policies install Cilium, whose operator installs its CRDs, or apply the CRD from ${CILIUM_CRDS}; checking again every ${Math.round(this.missingRecheckMs / 1000)} s without logging until it appears`,
    );
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
    if (s.missing) {
      s.missing = false;
      if (this.missingKinds.delete(s.resource.kind))
        this.log.info({ resource: s.path }, `${s.resource.kind} is served by this API server now (its CRD was installed); following its policies`);
    }
    this.log.info({ resource: s.path, count: items.size, resource_version: s.resourceVersion }, 'Listed network policies');
  }

  /** Follows one watch until it ends; returns how many events (bookmarks included) it brought. */
  private async watch(s: Stream, progress: () => void): Promise<number> {
    const timeout = this.opts.watchTimeoutSeconds ?? 300;
    const q = new URLSearchParams({
      watch: '1',
      resourceVersion: s.resourceVersion,
      allowWatchBookmarks: 'true',
      timeoutSeconds: String(timeout),
    });
    this.log.debug?.({ resource: s.path, resource_version: s.resourceVersion }, 'Watching network policies');
    const res = await this.open(`${s.path}?${q}`, this.opts.idleTimeoutMs ?? (timeout + 60) * 1000);
    res.setEncoding('utf8');
    let buf = '';
    let events = 0;
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          this.event(s, line);
          events++;
          progress();
        }
      }
    } catch (e) {
      if (isVerdictError(e, 'VERDICT_KUBE_API')) throw e;
      throw (
        this.idle.get(res) ??
        new Error(
          `${s.path}: the watch connection to ${this.opts.connection.server} broke (${(e as Error).message}); watching again from resourceVersion ${s.resourceVersion}`,
        )
      );
    }
    return events;
  }

  private event(s: Stream, line: string): void {
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      // Not a broken connection: the stream arrived but is not a Kubernetes watch (a proxy's page, say).
      throw kubeApiError(0, 'NotAWatch', `${s.path}: watch sent a line that is not JSON`);
    }
    if (!isObj(ev)) return;
    const type = ev.type;
    const obj = ev.object;
    if (type === 'ERROR') {
      const code = isObj(obj) ? obj.code : undefined;
      if (code === 410) throw kubeApiError(410, 'Expired', `${s.path}: the resource version is gone (410)`);
      throw kubeApiError(
        typeof code === 'number' ? code : 500,
        isObj(obj) && typeof obj.reason === 'string' ? obj.reason : '',
        `watch error: ${isObj(obj) && typeof obj.message === 'string' ? obj.message : 'unknown'}`,
      );
    }
    const m = meta(obj);
    if (m.resourceVersion) s.resourceVersion = m.resourceVersion;
    if (type === 'BOOKMARK') {
      this.log.debug?.({ resource: s.path, resource_version: m.resourceVersion }, 'Policy watch bookmark');
      return;
    }
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

  /** GET with auth; rejects with a VERDICT_KUBE_API error (details.status) for non-200 answers. */
  private async open(path: string, idleMs: number): Promise<IncomingMessage> {
    const c = this.opts.connection;
    const url = new URL(`${c.server}${path}`);
    // Asked before every request: rotated tokens and expired exec credentials are renewed here.
    const { headers: auth, ...tls } = await c.requestOptions();
    const headers: Record<string, string> = { ...auth, accept: 'application/json', 'user-agent': 'verdict-agent' };
    const https = url.protocol === 'https:';
    if (this.abort.signal.aborted) throw new Error('stopped');
    return new Promise((resolve, reject) => {
      let res: IncomingMessage | undefined;
      const req = (https ? httpsRequest : httpRequest)(url, { ...tls, method: 'GET', headers }, (r) => {
        res = r;
        if (r.statusCode === 200) {
          resolve(r);
          return;
        }
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => (body += d.length < 65536 ? d : ''));
        r.on('end', () => {
          if (r.statusCode === 410) return reject(kubeApiError(410, 'Expired', `${url.pathname}: the resource version is gone (410)`));
          let reason = '';
          let message = body.slice(0, 300);
          try {
            const st = JSON.parse(body) as Obj;
            reason = typeof st.reason === 'string' ? st.reason : '';
            message = typeof st.message === 'string' ? st.message : message;
          } catch {
            /* not a Status object */
          }
          reject(kubeApiError(r.statusCode ?? 0, reason, `${url.pathname}: HTTP ${r.statusCode}${reason ? ` ${reason}` : ''}: ${message}`));
        });
      });
      this.active.add(req);
      // A watch that hears nothing (not even a bookmark) for this long is a dead connection.
      req.setTimeout(idleMs, () => {
        const e = new Error(
          `${url.pathname}: no data for ${Math.round(idleMs / 1000)} s from ${c.server} (not even a bookmark); the connection is taken for dead and opened again`,
        );
        if (res) this.idle.set(res, e);
        req.destroy(e);
      });
      req.on('error', reject);
      req.end();
    });
  }
}
