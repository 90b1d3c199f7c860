import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Closers } from '../../src/shared/lifecycle/closers.js';

// A real HTTP receiver on loopback whose answers a test scripts per request.

export interface Received {
  n: number;
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** What to answer: a status (with headers/body), or 'hang' to never answer. */
export type Answer = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

export class Receiver {
  readonly requests: Received[] = [];
  private server: Server | undefined;
  private readonly hanging = new Set<ServerResponse>();
  private waiters: { pred: (r: Received[]) => boolean; resolve: () => void }[] = [];
  private readonly failures: unknown[] = [];
  answer: (r: Received) => Answer | Promise<Answer> = () => ({ status: 200 });
  /** Delay before every answer, to model a realistic endpoint. */
  latencyMs = 0;
  port = 0;

  async listen(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r: Received = {
          n: this.requests.length + 1,
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString('utf8'),
          at: Date.now(),
        };
        this.requests.push(r);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(this.requests)) return true;
          w.resolve();
          return false;
        });
        (async () => {
          const a = await this.answer(r);
          if (a === 'hang') {
            this.hanging.add(res);
            res.on('close', () => this.hanging.delete(res));
            return;
          }
          if (this.latencyMs) await new Promise((ok) => setTimeout(ok, this.latencyMs));
          res.writeHead(a.status, { 'content-type': 'text/plain', ...a.headers });
          res.end(a.body ?? '');
        })().catch((e: unknown) => {
          // A test's answer function that throws is the test's bug: the sender sees a
          // dropped connection, and close() reports the error so that the test fails.
          this.failures.push(e);
          res.destroy();
        });
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  url(path = '/hook'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  json<T = Record<string, unknown>>(i: number): T {
    return JSON.parse(this.requests[i]!.body) as T;
  }

  /** Resolves once `pred` holds for the requests so far. */
  waitFor(pred: (r: Received[]) => boolean, timeoutMs = 10_000, what = 'requests'): Promise<void> {
    if (pred(this.requests)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`receiver: timed out waiting for ${what}; got ${this.requests.length} request(s)`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      });
    });
  }

  waitForCount(n: number, timeoutMs = 10_000): Promise<void> {
    return this.waitFor((r) => r.length >= n, timeoutMs, `${n} request(s)`);
  }

  async close(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    if (this.failures.length)
      throw new Error(`receiver: answering a request failed: ${this.failures.map((e) => (e as Error).message ?? String(e)).join('; ')}`);
  }
}

/** A receiver listening on loopback, closed with `closers` (a test file's, closed in its afterEach). */
export async function startReceiver(closers: Closers): Promise<Receiver> {
  return closers.add('receiver', await new Receiver().listen(), (r) => r.close());
}
