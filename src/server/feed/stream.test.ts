import type { FastifyInstance } from 'fastify';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { createRootLogger, type Logger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import type { AlertFilter } from '../store/alert-query.js';
import { ciliumPayload, falcoPayload } from '../store/test-payloads.js';
import { textFrame, writeFrame } from './frames.js';
import { buildHttpServer } from './http-server.js';
import { StreamHub, type StreamHubOptions } from './stream.js';

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
      this.ws.once('unexpected-response', (_req, res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => reject(new Error(`HTTP ${res.statusCode}: ${body}`)));
      });
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

  /** Waits for what the stream sends, not for how fast: the bound is only how long a failing test takes. */
  async until(pred: (c: Client) => boolean, ms = 20_000): Promise<void> {
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

  it('pushes a stored alert, authenticated by header or by subprotocol', async () => {
    const byHeader = connect();
    const byProtocol = connect('', { protocols: ['verdict.v1', `bearer.${read}`] });
    await Promise.all([byHeader.opened, byProtocol.opened]);
    // The server answers with the stream protocol and never echoes the token.
    expect(byProtocol.ws.protocol).toBe('verdict.v1');
    await byHeader.until((c) => c.msgs.some((m) => m.type === 'live'));
    await byProtocol.until((c) => c.msgs.some((m) => m.type === 'live'));
    const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: 'live-1' }))]).alerts;
    await byHeader.until((c) => c.alerts.some((x) => x.id === a!.id));
    await byProtocol.until((c) => c.alerts.some((x) => x.id === a!.id));
    expect(byHeader.cursor).toBe(a!.seq);
  });

  it('refuses before the upgrade, saying so, a client that does not offer the verdict.v1 subprotocol', async () => {
    const offer = /HTTP 400: .*the live stream needs the WebSocket subprotocol verdict\.v1: offer it, and bearer\.<token> as a second one/;
    // Only the token: the server has no protocol to answer that the client offered.
    const onlyBearer = connect('', { protocols: [`bearer.${read}`] }).opened;
    await expect(onlyBearer).rejects.toThrow(offer);
    await expect(onlyBearer).rejects.not.toThrow(read);
    await expect(connect('', { token: read, protocols: ['foo.v2'] }).opened).rejects.toThrow(/HTTP 400: .*offered: foo\.v2/);
  });

  it('upgrades a client that offers no subprotocol and sends its token in the header or ?access_token= (websocat -H, wscat -H)', async () => {
    const byHeader = connect('', { token: read, protocols: [] });
    const byQuery = connect(`access_token=${read}`, { protocols: [] });
    await Promise.all([byHeader.opened, byQuery.opened]);
    // None offered, none answered: the client would drop a connection with a protocol it did not ask for.
    expect(byHeader.ws.protocol).toBe('');
    await byHeader.until((c) => c.msgs.some((m) => m.type === 'live'));
    await byQuery.until((c) => c.msgs.some((m) => m.type === 'live'));
    const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: 'live-no-protocol' }))]).alerts;
    await byHeader.until((c) => c.alerts.some((x) => x.id === a!.id));
    await byQuery.until((c) => c.alerts.some((x) => x.id === a!.id));
    await expect(connect('', { protocols: [] }).opened).rejects.toThrow('HTTP 401');
  });

  it('refuses the upgrade without a token, with a wrong one, and for a cursor from the future', async () => {
    await expect(connect('', {}).opened).rejects.toThrow('HTTP 401');
    await expect(connect('', { protocols: ['verdict.v1', 'bearer.vdt_feed_wrong'] }).opened).rejects.toThrow('HTTP 401');
    await expect(connect(`cursor=${store.currentSeq() + 100}`).opened).rejects.toThrow('HTTP 409');
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
    const expected = store.changesSince(cursor, {}, 10_000).alerts;
    expect(expected).toHaveLength(1201);

    const again = connect(`cursor=${cursor}`);
    await again.until((c) => c.msgs.some((m) => m.type === 'live'), 50_000);
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

/** A server-side socket stand-in whose unsent byte count the test sets. */
class FakeSocket extends EventEmitter {
  readonly OPEN = WebSocket.OPEN;
  readyState: number = WebSocket.OPEN;
  bufferedAmount = 0;
  readonly msgs: Msg[] = [];
  send(d: Buffer): void {
    this.msgs.push(JSON.parse(String(d)) as Msg);
  }
  close(): void {
    this.readyState = WebSocket.CLOSED;
    this.emit('close');
  }
  ping(): void {}
  terminate(): void {
    this.close();
  }
  get alerts() {
    return this.msgs.flatMap((m) => m.alerts ?? []);
  }
}

/** A server database with a read token, and a StreamHub over it (pings once a minute unless told). */
function hubFixture(o: StreamHubOptions & { log?: Logger } = {}) {
  const { log = createRootLogger({ name: 'test', level: 'silent' }), ...opts } = o;
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const tokenId = tokens.create('reader', 'read').info.id;
  const hub = new StreamHub(store, tokens, log, { pingMs: 60_000, ...opts });
  return {
    store,
    tokens,
    tokenId,
    hub,
    /** Adds a FakeSocket as a client of the reader's token. */
    add: (s: FakeSocket, filter: AlertFilter = {}, cursor?: number) => hub.add(s as unknown as WebSocket, filter, cursor, tokenId),
    close: () => {
      hub.close();
      db.close();
    },
  };
}

describe('live stream: latency', () => {
  // How fast a frame crosses the loopback depends on the machine's load; what the
  // stream controls is when it sends: at the store's commit, not from a timer or a poll.
  it("hands a change to every live client's socket before the ingest that stored it returns", () => {
    const h = hubFixture();
    const { store, add } = h;
    try {
      const c = new FakeSocket();
      add(c);
      expect(c.msgs).toEqual([{ type: 'live', cursor: store.currentSeq() }]);
      const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: 'at-commit' }))]).alerts;
      expect(c.alerts.map((x) => x.id)).toEqual([a!.id]);
      expect(c.msgs.at(-1)!.cursor).toBe(a!.seq);
    } finally {
      h.close();
    }
  });
});

describe('live stream: pings', () => {
  it('keeps pinging when the feed tokens cannot be read, and ends a revoked stream once they can', async () => {
    const { log, logs } = capturingLogger('error');
    const h = hubFixture({ log, pingMs: 20 });
    const { tokens, add } = h;
    try {
      const c = new FakeSocket();
      let pings = 0;
      c.ping = () => {
        pings++;
        c.emit('pong');
      };
      add(c);
      const list = tokens.list.bind(tokens);
      tokens.list = () => {
        throw new Error('database is locked');
      };
      tokens.revoke(h.tokenId);
      await until(
        () => pings >= 3 || undefined,
        20_000,
        () => `three pings (got ${pings})`,
      );
      expect(pings).toBeGreaterThanOrEqual(3);
      expect(c.readyState).toBe(WebSocket.OPEN);
      expect(logs.map((l) => l.msg)).toContain('Live stream: reading the feed tokens failed; checking revocations at the next ping');
      tokens.list = list;
      await until(() => c.readyState === WebSocket.CLOSED || undefined, 20_000, 'the revoked stream to close');
    } finally {
      h.close();
    }
  });
});

describe('live stream: slow clients', () => {
  it('takes a client past its buffer bound off the live path without delaying others, then feeds it from the database without gap or duplicate', async () => {
    const h = hubFixture({ maxBuffered: 1000 });
    const { store, add } = h;
    try {
      store.ingest('edge', [ev(ciliumPayload({ fp: 'slow-0' }))]);
      const fast = new FakeSocket();
      const slow = new FakeSocket();
      add(fast);
      add(slow);
      expect(slow.msgs).toEqual([{ type: 'live', cursor: store.currentSeq() }]);
      const from = store.currentSeq();

      // The slow client's socket holds more than the bound: nothing more is queued for it,
      // while the other client gets each change as it commits.
      slow.bufferedAmount = 5000;
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        const [a] = store.ingest('edge', [ev(ciliumPayload({ fp: `slow-${i}` })), ev(falcoPayload({ fp: `slow-f-${i}`, pod: `p-${i}` }))]).alerts;
        ids.push(a!.id);
        expect(fast.alerts.at(-1)?.seq).toBe(store.currentSeq());
      }
      store.setStatus(ids[0]!, 'acknowledged', 'test');
      expect(fast.alerts.at(-1)).toMatchObject({ id: ids[0], status: 'acknowledged' });
      // Every ingest() is one message to the fast client.
      expect(fast.msgs.filter((m) => m.type === 'alerts')).toHaveLength(6);
      await new Promise((r) => setTimeout(r, 150));
      expect(slow.msgs).toHaveLength(1);

      // Once it drains, it gets every change after its cursor exactly once (latest state), then live ones.
      slow.bufferedAmount = 0;
      await until(() => slow.msgs.filter((m) => m.type === 'live').length >= 2 || undefined, 20_000, 'the slow client to catch up and go live');
      const expected = store.changesSince(from, {}, 1000).alerts;
      expect(slow.alerts.map((a) => a.seq)).toEqual(expected.map((a) => a.seq));
      expect(new Set(slow.alerts.map((a) => a.id)).size).toBe(slow.alerts.length);
      expect(slow.msgs.at(-1)).toEqual({ type: 'live', cursor: store.currentSeq() });
      const [b] = store.ingest('edge', [ev(ciliumPayload({ fp: 'slow-after' }))]).alerts;
      expect(slow.alerts.at(-1)?.id).toBe(b!.id);
      expect(fast.alerts.at(-1)?.id).toBe(b!.id);
    } finally {
      h.close();
    }
  });
});

describe('live stream: shared messages', () => {
  it('gives clients whose filters differ only in their time window the message each one should get', () => {
    const h = hubFixture();
    const { store, add } = h;
    try {
      const now = Date.now();
      const hour = new FakeSocket();
      const day = new FakeSocket();
      const acked = new FakeSocket();
      const text = new FakeSocket();
      const text2 = new FakeSocket();
      add(hour, { since: now - 3_600_000 });
      add(day, { since: now - 86_400_000 });
      add(acked, { status: ['acknowledged'], since: now - 86_400_000 });
      add(text, { q: 'needle-pod', since: now - 3_600_000 });
      add(text2, { q: 'needle-pod', since: now - 7_200_000 });
      const old = new Date(now - 5 * 3_600_000).toISOString();
      const [fresh, stale, needle] = store.ingest('edge', [
        ev(ciliumPayload({ fp: 'w-fresh' })),
        ev(ciliumPayload({ fp: 'w-stale', time: old })),
        ev(falcoPayload({ fp: 'w-needle', pod: 'needle-pod-2' })),
      ]).alerts;
      expect(hour.alerts.map((a) => a.id)).toEqual([fresh!.id, needle!.id]);
      expect(day.alerts.map((a) => a.id)).toEqual([fresh!.id, stale!.id, needle!.id]);
      expect(acked.msgs.filter((m) => m.type === 'alerts')).toEqual([
        { type: 'alerts', cursor: store.currentSeq(), alerts: [], removed: [fresh!.id, stale!.id, needle!.id] },
      ]);
      expect(text.alerts.map((a) => a.id)).toEqual([needle!.id]);
      expect(text2.alerts.map((a) => a.id)).toEqual([needle!.id]);
      store.setStatus(stale!.id, 'acknowledged', 'test');
      expect(acked.alerts.map((a) => a.id)).toEqual([stale!.id]);
      expect(hour.msgs.filter((m) => m.type === 'alerts')).toHaveLength(1);
      expect(day.alerts.at(-1)).toMatchObject({ id: stale!.id, status: 'acknowledged' });
    } finally {
      h.close();
    }
  });

  it('does not fail an ingest when sending fails, and the clients still get every change', async () => {
    const h = hubFixture();
    const { store, add } = h;
    try {
      const c = new FakeSocket();
      add(c, { q: 'needle-pod' });
      const from = store.currentSeq();
      const orig = store.matchingText.bind(store);
      store.matchingText = () => {
        throw new Error('database is locked');
      };
      const [a] = store.ingest('edge', [ev(falcoPayload({ fp: 'fail-1', pod: 'needle-pod-3' }))]).alerts;
      store.matchingText = orig;
      await until(() => c.msgs.filter((m) => m.type === 'live').length >= 2 || undefined, 20_000, 'the client to catch up and go live');
      expect(c.alerts.map((x) => x.id)).toEqual([a!.id]);
      expect(c.msgs.at(-1)).toEqual({ type: 'live', cursor: store.currentSeq() });
      expect(from).toBeLessThan(store.currentSeq());
    } finally {
      h.close();
    }
  });
});

describe('live stream: pre-built frames', () => {
  it('sends messages encoded once as text frames that real clients decode at every length class', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => wss.once('listening', r));
    const server = new Promise<WebSocket>((r) => wss.once('connection', r));
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`);
    const got: string[] = [];
    client.on('message', (d, isBinary) => {
      expect(isBinary).toBe(false);
      got.push(String(d));
    });
    const ws = await server;
    const texts = [0, 1, 125, 126, 127, 65535, 65536, 70000].map((n) => 'x'.repeat(n));
    texts.push('pod-ü-€-😀'.repeat(20_000)); // multi-byte: length in bytes, not characters
    // One encoded message sent to the same socket twice: ws must not consume or alter it.
    const shared = textFrame('shared');
    texts.push('shared', 'shared');
    for (const t of texts.slice(0, -2)) writeFrame(ws, textFrame(t));
    writeFrame(ws, shared);
    writeFrame(ws, shared);
    await until(
      () => got.length >= texts.length || undefined,
      20_000,
      () => `${texts.length} messages (got ${got.length})`,
    );
    expect(got).toEqual(texts);
    client.close();
    await new Promise((r) => client.once('close', r));
    wss.close();
  });
});

describe('live stream: the same filters as the list', () => {
  /** What a client shows after applying every message it got: alerts by id. */
  const view = (c: FakeSocket) => {
    const m = new Map<number, Msg['alerts'] extends (infer A)[] | undefined ? A : never>();
    for (const msg of c.msgs) {
      for (const a of msg.alerts ?? []) m.set(a.id, a);
      for (const id of msg.removed ?? []) m.delete(id);
    }
    return [...m.keys()].sort((x, y) => x - y);
  };

  it('ends with exactly the alerts the list shows, live and when catching up from a cursor, for every filter', () => {
    const h = hubFixture();
    const { store, add } = h;
    try {
      const T = Date.UTC(2024, 0, 1, 12);
      const at = (min: number) => new Date(T + min * 60_000).toISOString();
      const filters: AlertFilter[] = [
        {},
        { status: ['triggered'] },
        { status: ['acknowledged', 'ignored'] },
        { severity: ['high', 'critical'] },
        { source: ['falco'] },
        { agent: ['b'] },
        { namespace: ['db', 'kube-system'] },
        { policy: ['db-lockdown'] },
        { policy: ['shop/payments-api-ingress'] },
        { rule: ['Write below etc'] },
        { q: 'payments-api' },
        { q: 'coredns-1' },
        { since: T + 30 * 60_000 },
        { until: T + 30 * 60_000 },
        { since: T + 10 * 60_000, until: T + 50 * 60_000 },
        { status: ['triggered'], severity: ['medium'], source: ['cilium'], since: T },
      ];
      const live = filters.map((f) => {
        const s = new FakeSocket();
        add(s, f, 0);
        return s;
      });

      // New alerts, repeats that move last_seen past a window and change severity,
      // status changes (in and out of status views), and a second agent.
      const r1 = store.ingest('a', [
        ev(ciliumPayload({ fp: 'pay', ns: 'shop', dst: 'payments-api', time: at(0) })),
        ev(ciliumPayload({ fp: 'db', ns: 'db', dst: 'postgres', policy: 'db-lockdown', severity: 'high', time: at(20) })),
        ev(falcoPayload({ fp: 'shell', ns: 'shop', pod: 'checkout-7f9', severity: 'critical', time: at(40) })),
        ev(falcoPayload({ fp: 'etc', rule: 'Write below etc', ns: 'kube-system', pod: 'coredns-1', severity: 'low', time: at(5) })),
      ]).alerts;
      store.ingest('b', [ev(ciliumPayload({ fp: 'pay', ns: 'shop', dst: 'payments-api', time: at(15) }))]);
      const byFp = new Map(r1.map((a) => [a.fingerprint, a.id]));
      store.setStatus(byFp.get('db')!, 'acknowledged', 'test');
      store.ingest('a', [ev(ciliumPayload({ fp: 'pay', ns: 'shop', dst: 'payments-api', severity: 'high', time: at(45) }))]);
      store.ingest('a', [ev(falcoPayload({ fp: 'etc', rule: 'Write below etc', ns: 'kube-system', pod: 'coredns-1', severity: 'low', time: at(60) }))]);
      store.setStatus(byFp.get('shell')!, 'ignored', 'test');
      store.setStatus(byFp.get('pay')!, 'resolved', 'test');
      store.setStatus(byFp.get('pay')!, 'acknowledged', 'test');
      store.ingest('a', [ev(falcoPayload({ fp: 'shell', ns: 'shop', pod: 'checkout-7f9', severity: 'medium', time: at(25) }))]);

      filters.forEach((f, i) => {
        const want = store
          .list({ ...f, limit: 100 })
          .alerts.map((a) => a.id)
          .sort((x, y) => x - y);
        expect(view(live[i]!), `live ${JSON.stringify(f)}`).toEqual(want);
        const late = new FakeSocket();
        add(late, f, 0);
        expect(view(late), `catching up ${JSON.stringify(f)}`).toEqual(want);
      });
    } finally {
      h.close();
    }
  });
});
