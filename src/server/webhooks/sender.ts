import http from 'node:http';
import https from 'node:https';
import { errText } from '../../shared/log/logger.js';
import type { AddressPolicy } from '../../shared/net/ssrf.js';
import { isVerdictError } from '../../shared/errors.js';

// One HTTP POST with a hard deadline. node:http rather than fetch because the
// address check must sit in the socket's lookup (see shared/net/ssrf.ts), redirects must
// not be followed (a 3xx is a failed try, and following it would dodge the
// check), and the deadline must cover the whole exchange, body included.

export interface SendRequest {
  url: URL;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  policy: AddressPolicy;
  agent: http.Agent;
  signal?: AbortSignal;
}

export type FailureReason = 'http_3xx' | 'http_4xx' | 'http_5xx' | 'timeout' | 'network' | 'refused_address' | 'config' | 'aborted';

export interface SendResult {
  status: number | null;
  ok: boolean;
  /** From Retry-After, in ms, when the answer carried one. */
  retryAfterMs?: number;
  error: string | null;
  reason?: FailureReason;
  durationMs: number;
}

const MAX_ERROR_BODY = 512;

/** Retry-After as seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | undefined, now = Date.now()): number | undefined {
  if (!v) return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

export function newAgent(url: URL, maxSockets: number): http.Agent {
  const opts = { keepAlive: true, maxSockets, keepAliveMsecs: 30_000 };
  return url.protocol === 'https:' ? new https.Agent(opts) : new http.Agent(opts);
}

export function send(req: SendRequest): Promise<SendResult> {
  const started = performance.now();
  const took = () => Math.round(performance.now() - started);
  const refused = req.policy.checkLiteral(req.url);
  if (refused) return Promise.resolve({ status: null, ok: false, error: refused, reason: 'refused_address', durationMs: 0 });
  const mod = req.url.protocol === 'https:' ? https : http;
  return new Promise<SendResult>((resolve) => {
    let settled = false;
    const done = (r: Omit<SendResult, 'durationMs'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
      resolve({ ...r, durationMs: took() });
    };
    const r = mod.request(
      req.url,
      {
        method: 'POST',
        agent: req.agent,
        lookup: req.policy.lookup,
        headers: { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) },
      },
      (res) => {
        const status = res.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < MAX_ERROR_BODY) chunks.push(c);
          size += c.length;
        });
        res.on('end', () => {
          const ok = status >= 200 && status < 300;
          const text = Buffer.concat(chunks).toString('utf8').slice(0, MAX_ERROR_BODY).trim();
          const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
          done({
            status,
            ok,
            ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
            error: ok
              ? null
              : `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}${status >= 300 && status < 400 ? ' (redirects are not followed; use the final URL)' : ''}${text ? `: ${text}` : ''}`,
            ...(ok ? {} : { reason: status >= 500 ? 'http_5xx' : status >= 400 ? 'http_4xx' : 'http_3xx' }),
          });
        });
        res.on('error', (e) => done({ status, ok: false, error: `reading the response failed: ${errText(e)}`, reason: 'network' }));
      },
    );
    const timer = setTimeout(() => {
      done({ status: null, ok: false, error: `no complete answer within ${req.timeoutMs} ms (the integration's timeout)`, reason: 'timeout' });
      r.destroy();
    }, req.timeoutMs);
    const onAbort = () => {
      done({ status: null, ok: false, error: 'the server is shutting down', reason: 'aborted' });
      r.destroy();
    };
    req.signal?.addEventListener('abort', onAbort, { once: true });
    if (req.signal?.aborted) onAbort();
    r.on('error', (e) => {
      if (isVerdictError(e, 'VERDICT_WEBHOOK_ADDRESS_REFUSED')) return done({ status: null, ok: false, error: e.message, reason: 'refused_address' });
      const code = (e as NodeJS.ErrnoException).code;
      const hint = code === 'ECONNREFUSED' ? ': nothing listens there' : code === 'ENOTFOUND' ? ': the host name does not resolve' : '';
      done({ status: null, ok: false, error: `${errText(e)}${hint}`, reason: 'network' });
    });
    r.end(req.body);
  });
}
