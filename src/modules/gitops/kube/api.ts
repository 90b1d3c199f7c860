import type { ClientRequest } from 'node:http';
import { request, type RequestOptions } from 'node:https';
import { type KubeStatusCause, kubeApiError } from '../../../agent/kubernetes/errors.js';
import { InFlight } from '../../../agent/kubernetes/in-flight.js';

// Plain HTTPS to the Kubernetes API server for GitOps: server-side apply
// (application/apply-patch+yaml with a JSON body: JSON is YAML, and YAML 1.1
// would turn a bare `y` into true), gets, lists and deletes. The connection
// (server, credentials, CA) and its keep-alive pool are the agent's shared
// ones (src/agent/kubernetes/): the agent the connection gives with each
// request's options is used as given, so a sync of 1,000 objects does not pay
// 1,000 TLS handshakes.

/** The agent's connection to the API server (src/agent/kubernetes/connection.ts's KubeConnection fits). */
export interface KubeEndpoint {
  readonly server: string;
  /** Where the credentials come from, for messages. */
  readonly source?: string;
  requestOptions(): Promise<Omit<RequestOptions, 'headers'> & { headers: Record<string, string> }>;
}

export interface KubeResponse<T = unknown> {
  status: number;
  body: T;
}

export interface KubeRequest {
  method: 'GET' | 'PATCH' | 'DELETE' | 'PUT' | 'POST';
  path: string;
  query?: Record<string, string | undefined>;
  body?: unknown;
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
}

export class KubeApi {
  /** Requests not yet over, ended by close(). */
  private readonly open = new InFlight();
  /**
   * The requests in flight under each caller's signal. A sync sends dozens at once (its pool of 32, discovery,
   * the wait's reads) under one signal: given to each request, the signal would hold one abort listener per
   * request (MaxListenersExceededWarning past 10); here it holds one, which ends all of them.
   */
  private readonly inFlight = new Map<AbortSignal, { reqs: Set<ClientRequest>; onAbort: () => void }>();

  constructor(readonly endpoint: KubeEndpoint) {}

  async request<T>(r: KubeRequest): Promise<KubeResponse<T>> {
    const opts = await this.endpoint.requestOptions();
    const q = Object.entries(r.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    const url = new URL(this.endpoint.server + r.path + (q.length ? `?${new URLSearchParams(q)}` : ''));
    const payload = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body));
    const options: RequestOptions = {
      ...opts,
      method: r.method,
      headers: {
        ...opts.headers,
        accept: r.accept ?? 'application/json',
        'user-agent': 'verdict-agent/gitops',
        ...(payload ? { 'content-type': r.contentType ?? 'application/json', 'content-length': String(payload.length) } : {}),
      },
    };
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.send<T>(url, options, payload, r);
      } catch (e) {
        // A kept-alive socket the server closed as it was reused (the pool closes idle ones well before the
        // server's 90 s, but the server may close one sooner), before any answer: the request (a read, an
        // apply or a delete, each safe to repeat) is sent again on another, as Go's client does.
        if (!(e as { reusedSocket?: boolean }).reusedSocket || attempt >= 3 || r.signal?.aborted) throw e;
      }
    }
  }

  private send<T>(url: URL, options: RequestOptions, payload: Buffer | undefined, r: KubeRequest): Promise<KubeResponse<T>> {
    return new Promise((resolve, reject) => {
      if (r.signal?.aborted) return reject(abortError(r.signal));
      const req = request(url, options, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body: unknown = text;
          try {
            body = text ? JSON.parse(text) : undefined;
          } catch {
            // Not JSON (a proxy's HTML error page): kept as text for the message.
          }
          const status = res.statusCode ?? 0;
          if (status >= 400) {
            // A Kubernetes Status, kept whole (VERDICT_KUBE_API): its reason and message are what users read.
            const s = body as { kind?: string; reason?: string; message?: string; details?: { causes?: KubeStatusCause[] } } | undefined;
            if (s && typeof s === 'object' && s.kind === 'Status')
              return reject(kubeApiError(status, s.reason ?? '', s.message ?? `HTTP ${status}`, s.details?.causes));
            return reject(kubeApiError(status, '', `HTTP ${status} from ${r.method} ${r.path}: ${text.slice(0, 300)}`));
          }
          resolve({ status, body: body as T });
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        const reset = e.code === 'ECONNRESET' || e.code === 'EPIPE';
        reject(reset && req.reusedSocket ? Object.assign(e, { reusedSocket: true }) : e);
      });
      this.open.add(req);
      if (r.signal) this.track(r.signal, req);
      req.end(payload);
    });
  }

  /** Ends req when signal aborts, through the signal's one listener; forgets it once closed. */
  private track(signal: AbortSignal, req: ClientRequest): void {
    let t = this.inFlight.get(signal);
    if (!t) {
      const reqs = new Set<ClientRequest>();
      const onAbort = () => {
        this.inFlight.delete(signal);
        for (const q of reqs) q.destroy(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.inFlight.set(signal, (t = { reqs, onAbort }));
    }
    const mine = t;
    mine.reqs.add(req);
    req.once('close', () => {
      mine.reqs.delete(req);
      if (mine.reqs.size === 0 && this.inFlight.get(signal) === mine) {
        this.inFlight.delete(signal);
        signal.removeEventListener('abort', mine.onAbort);
      }
    });
  }

  /** Ends the requests in flight; the connections are the agent's pool, which other modules share. */
  close(): void {
    this.open.destroyAll();
  }
}

/** What Node's http gives a request its signal aborts: an AbortError whose cause is the signal's reason. */
function abortError(signal: AbortSignal): Error {
  return Object.assign(new Error('The operation was aborted', { cause: signal.reason }), { name: 'AbortError', code: 'ABORT_ERR' });
}
