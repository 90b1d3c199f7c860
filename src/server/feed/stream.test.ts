import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createRootLogger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload, falcoPayload } from '../store/test-payloads.js';
import { buildHttpServer } from './http-server.js';

interface Msg {
  type: string;
  cursor: number;
  alerts?: { id: number; seq: number; status: string; count: number; namespace: string }[];
  removed?: number[];
}

/** A stream client that records every message. */
class Client {
  readonly msgs: Msg[] = [];
  readonly ws: WebSocket;
  readonly opened: Promise<void>;
  private waiters: (() => void)[] = [];

  constructor(url: string, opts: { token?: string; protocols?: string[] } = {}) {
    this.ws = new WebSocket(url, opts.protocols ?? ['verdict.v1'], opts.token ? { headers: { authorization: `Bearer ${opts.token}` } } : {});
    this.ws.on('message', (d) => {
      this.msgs.push(JSON.parse(String(d)) as Msg);
      for (const w of this.waiters.splice(0)) w();
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      this.ws.once('error', reject);
    });
  }

  get alerts() {
    return this.msgs.flatMap((m) => m.alerts ?? []);
  }
  get removed() {
    return this.msgs.flatMap((m) => m.removed ?? []);
  }
  get cursor() {
    return this.msgs.at(-1)?.cursor ?? 0;
  }

  async until(pred: (c: Client) => boolean, ms = 3000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this)) {
      if (Date.now() > end) throw new Error(`timed out; messages: ${JSON.stringify(this.msgs).slice(0, 800)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  close(): Promise<void> {
    return new Promise((r) => {
      if (this.ws.readyState === WebSocket.CLOSED) return r();
      this.ws.once('close', () => r());
      this.ws.close();
    });
  }
}

let n = 0;
const ev = (payload: ReturnType<typeof ciliumPayload>) => ({ id: `stream-${++n}`, payload });

describe('live stream', () => {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const read = tokens.create('reader', 'read').token;
  let app: FastifyInstance;
  let base = '';
  const clients: Client[] = [];
  const connect = (query = '', opts: { token?: string; protocols?: string[] } = { token: read }) => {
    const c = new Client(`${base}/api/v1/alerts/stream${query ? `?${query}` : ''}`, opts);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true, streamPingMs: 200 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await app.close();
    db.close();
  });

  it('pushes a stored alert within 100 ms, authenticated by header or by subprotocol', async () => {
    const byHeader = connect();
    const byProtocol = connect('', { protocols: ['verdict.v1', `bearer.${read}`] });
    await Promise.all([byHeader.opened, byProtocol.opened]);
    // The server answers with the stream protocol and never echoes the token.
    expect(byProtocol.ws.protocol).toBe('verdict.v1');
    await byHeader.until((c) => c.msgs.some((m) => m.type === 'live'));
    await byProtocol.until((c) => c.msgs.some((m) => m.type === 'live'));
    const t0 = performance.now();
    const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: 'live-1' }))]).alerts;
    await byHeader.until((c) => c.alerts.some((x) => x.id === a!.id));
    expect(performance.now() - t0).toBeLessThan(100);
    await byProtocol.until((c) => c.alerts.some((x) => x.id === a!.id));
    expect(byHeader.cursor).toBe(a!.seq);
  });

  it('refuses the upgrade without a token, with a wrong one, and for a cursor from the future', async () => {
    await expect(connect('', {}).opened).rejects.toThrow('HTTP 401');
    await expect(connect('', { protocols: ['verdict.v1', 'bearer.vdt_feed_wrong'] }).opened).rejects.toThrow('HTTP 401');
    await expect(connect(`cursor=${store.currentSeq() + 100}`).opened).rejects.toThrow('HTTP 400');
    await expect(connect('severity=urgent').opened).rejects.toThrow('HTTP 400');
    const res = await fetch(`${base.replace('ws:', 'http:')}/api/v1/alerts/stream`, { headers: { authorization: `Bearer ${read}` } });
    expect(res.status).toBe(426);
  });

  it('resumes from a cursor with every change after it exactly once, then goes live', async () => {
    const first = connect();
    await first.until((c) => c.msgs.some((m) => m.type === 'live'));
    const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: 'resume-a' }))]).alerts;
    await first.until((c) => c.alerts.some((x) => x.id === a!.id));
    const cursor = first.cursor;
    await first.close();

    // While away: new alerts (more than a catch-up page), repeats and a status change.
    const batch = [];
    for (let i = 0; i < 1200; i++) batch.push(ev(falcoPayload({ fp: `resume-${i}`, pod: `p-${i}` })));
    store.ingest('edge', batch);
    store.ingest('edge', [ev(ciliumPayload({ fp: 'resume-a' })), ev(ciliumPayload({ fp: 'resume-a' }))]);
    store.setStatus(a!.id, 'acknowledged', 'test');
    const expected = store.changesSince(cursor, {}, 10_000);
    expect(expected).toHaveLength(1201);

    const again = connect(`cursor=${cursor}`);
    await again.until((c) => c.msgs.some((m) => m.type === 'live'), 10_000);
    const got = again.alerts;
    expect(got.map((x) => x.seq)).toEqual(expected.map((x) => x.seq));
    expect(new Set(got.map((x) => x.id)).size).toBe(got.length);
    expect(got.find((x) => x.id === a!.id)).toMatchObject({ status: 'acknowledged', count: 3 });
    expect(again.msgs.find((m) => m.type === 'live')!.cursor).toBe(store.currentSeq());

    const [b] = store.ingest('edge', [ev(ciliumPayload({ fp: 'resume-after' }))]).alerts;
    await again.until((c) => c.alerts.some((x) => x.id === b!.id));
    expect(again.alerts.filter((x) => x.id === b!.id)).toHaveLength(1);
  });

  it('applies the list filters, and tells a client when a changed alert leaves its view', async () => {
    const triggered = connect('status=triggered&namespace=payments');
    const search = connect('q=needle-pod');
    await triggered.until((c) => c.msgs.some((m) => m.type === 'live'));
    await search.until((c) => c.msgs.some((m) => m.type === 'live'));
    const [x] = store.ingest('edge', [ev(ciliumPayload({ fp: 'f-pay', ns: 'payments' }))]).alerts;
    const [other] = store.ingest('edge', [ev(ciliumPayload({ fp: 'f-other', ns: 'web' }))]).alerts;
    const [found] = store.ingest('edge', [ev(falcoPayload({ fp: 'f-needle', pod: 'needle-pod-1' }))]).alerts;
    await triggered.until((c) => c.alerts.some((a) => a.id === x!.id));
    await search.until((c) => c.alerts.some((a) => a.id === found!.id));
    store.setStatus(x!.id, 'acknowledged', 'test');
    await triggered.until((c) => c.removed.includes(x!.id));
    expect(triggered.alerts.map((a) => a.id)).not.toContain(other!.id);
    expect(search.alerts.map((a) => a.id)).toEqual([found!.id]);
  });

  it('closes the streams of a revoked token', async () => {
    const t = tokens.create('temp', 'read');
    const c = connect('', { token: t.token });
    await c.until((x) => x.msgs.some((m) => m.type === 'live'));
    const closed = new Promise<number>((r) => c.ws.once('close', (code) => r(code)));
    tokens.revoke(t.info.id);
    expect(await closed).toBe(4401);
  });
});
