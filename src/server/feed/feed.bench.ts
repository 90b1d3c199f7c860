import websocket from '@fastify/websocket';
import Fastify from 'fastify';
import { fork, type ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import type { WebSocket } from 'ws';
import { createRootLogger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore, type StoredAlert } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload } from '../store/test-payloads.js';
import { alertView } from './alerts-routes.js';
import { buildHttpServer } from './http-server.js';

// Delivery latency of the live stream to 500 WebSocket clients, from just
// before ingest() is called to the client's receipt of the message carrying
// the alert. The clients run in a child process (feed-bench-clients.ts), so
// their work does not share the server's event loop or heap; both processes
// read the same monotonic clock.
//
// Three systems, measured in the same run with their rounds interleaved
// (A, B, C, A, B, C, ...) so that load from other processes on the machine
// falls on all of them alike; each has its own 500 clients:
//   A. Verdict (store + stream hub + fastify), every client with the same filters;
//   B. Verdict, the clients spread over 50 distinct filters (all matching);
//   C. baseline: a bare @fastify/websocket route broadcasting the same message
//      (the alerts A just stored, serialized once, sent as one Buffer with
//      ws.send to every client): no store, no filters, no auth.

const CLIENTS = 500;
const ROUNDS = 200;
const EVENTS_PER_ROUND = 5;
const INTERVAL_MS = 50;
const DISTINCT_FILTERS = 50;

const nowMs = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pct(sorted: Float64Array | number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Pool {
  url: string;
  protocols: string[];
  queries: string[];
  waitLive: boolean;
}
type FromChild = { ready?: boolean; counts?: number[]; results?: { cursors: Float64Array; times: Float64Array }[]; error?: string };

/** The client process: connects the pools, and answers counts and results. */
class Clients {
  private readonly child: ChildProcess;
  private waiters: ((m: FromChild) => void)[] = [];
  readonly errors: string[] = [];

  constructor() {
    this.child = fork(new URL('./feed-bench-clients.js', import.meta.url), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromChild) => {
      if (m.error) {
        if (this.errors.length < 5) this.errors.push(m.error);
        return;
      }
      for (const w of this.waiters.splice(0)) w(m);
    });
  }

  private ask(msg: object, want: (m: FromChild) => boolean, ms: number): Promise<FromChild> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`bench clients did not answer ${JSON.stringify(msg)} within ${ms} ms; errors: ${this.errors.join('; ')}`)),
        ms,
      );
      const wait = (m: FromChild) => {
        if (want(m)) {
          clearTimeout(timer);
          resolve(m);
        } else this.waiters.push(wait);
      };
      this.waiters.push(wait);
      this.child.send(msg);
    });
  }

  connect(pools: Pool[]): Promise<FromChild> {
    return this.ask({ pools }, (m) => !!m.ready, 60_000);
  }

  /** Waits until each pool has received `want[i]` messages (or the time is up), then returns what was received. */
  async collect(want: number[], ms: number): Promise<{ cursors: Float64Array; times: Float64Array }[]> {
    const end = Date.now() + ms;
    for (;;) {
      const { counts } = await this.ask({ count: true }, (m) => !!m.counts, 10_000);
      if (counts!.every((n, i) => n >= want[i]!) || Date.now() > end) break;
      await sleep(100);
    }
    const { results } = await this.ask({ collect: true }, (m) => !!m.results, 30_000);
    this.child.kill();
    return results!;
  }
}

/** One system under test: what it does in a round, and the send time of each cursor. */
interface System {
  name: string;
  sentAt: Map<number, number>;
  alertsAt: Map<number, number>;
  round(r: number): void;
}

/** A Verdict server (store, tokens, fastify with the stream) with its timing of ingest vs broadcast. */
async function verdict(name: string) {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const token = tokens.create('bench', 'read').token;
  const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'bench', level: 'silent' }), ready: () => true });
  await app.listen({ host: '127.0.0.1', port: 0 });
  // The hub broadcasts after the store's commit; this listener, added after it, brackets that:
  // ingest() = store work, then the broadcast (plus the commit of an in-memory database, µs).
  let emitAt = 0;
  const storeMs: number[] = [];
  const broadcastMs: number[] = [];
  store.onChange((_, tx) => {
    emitAt = performance.now();
    tx.afterCommit(() => broadcastMs.push(performance.now() - emitAt));
  });
  let k = 0;
  let last: StoredAlert[] = [];
  const sys: System & { storeMs: number[]; broadcastMs: number[]; last: () => StoredAlert[] } = {
    name,
    sentAt: new Map(),
    alertsAt: new Map(),
    storeMs,
    broadcastMs,
    last: () => last,
    round() {
      const events = [];
      for (let i = 0; i < EVENTS_PER_ROUND; i++) events.push({ id: `bench-ev-${k}`, payload: ciliumPayload({ fp: `bench-${k++}` }) });
      const t0 = nowMs();
      const p0 = performance.now();
      const changed = store.ingest('bench', events).alerts;
      storeMs.push(emitAt - p0);
      const cursor = changed.reduce((m, a) => Math.max(m, a.seq), 0);
      sys.sentAt.set(cursor, t0);
      sys.alertsAt.set(cursor, changed.length);
      last = changed;
    },
  };
  const pool = (queries: string[]): Pool => ({
    url: `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/v1/alerts/stream`,
    protocols: ['verdict.v1', `bearer.${token}`],
    queries,
    waitLive: true,
  });
  const close = async () => {
    await app.close();
    db.close();
  };
  return { sys, pool, close };
}

/** Distinct filters that all match the bench's alerts (cilium, agent "bench", namespace shop, medium, triggered). */
function distinctFilters(n: number): string[] {
  const base = [
    '',
    'status=triggered',
    'source=cilium',
    'agent=bench',
    'namespace=shop',
    'severity=medium,high',
    'status=triggered,acknowledged&source=cilium',
    'policy=shop/payments-ingress',
    'namespace=shop&severity=medium',
    'q=shop',
  ];
  const windows = ['since=1h', 'since=2h', 'since=6h', 'since=24h', 'since=7d'];
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) out.push([base[i % base.length], windows[Math.floor(i / base.length) % windows.length]].filter(Boolean).join('&'));
  return out;
}

function latencies(sys: System, res: { cursors: Float64Array; times: Float64Array }): { lat: Float64Array; deliveries: number; unknown: number } {
  const lat = new Float64Array(res.cursors.length);
  let deliveries = 0;
  let unknown = 0;
  let n = 0;
  for (let i = 0; i < res.cursors.length; i++) {
    const t0 = sys.sentAt.get(res.cursors[i]!);
    if (t0 === undefined) {
      unknown++;
      continue;
    }
    lat[n++] = res.times[i]! - t0;
    deliveries += sys.alertsAt.get(res.cursors[i]!)!;
  }
  return { lat: lat.subarray(0, n).sort(), deliveries, unknown };
}

function row(name: string, lat: Float64Array, note: string): void {
  const f = (x: number) => `${x.toFixed(1).padStart(6)} ms`;
  console.log(`  ${name.padEnd(44)} p50 ${f(pct(lat, 50))}  p99 ${f(pct(lat, 99))}  max ${f(lat.length ? lat[lat.length - 1]! : 0)}  ${note}`);
}

function timeRow(name: string, xs: number[]): void {
  const s = [...xs].sort((a, b) => a - b);
  console.log(`  ${name.padEnd(44)} p50 ${pct(s, 50).toFixed(1).padStart(6)} ms  p99 ${pct(s, 99).toFixed(1).padStart(6)} ms`);
}

export default async function run(): Promise<void> {
  console.log(
    `live stream: ${CLIENTS} WebSocket clients per system (in a child process), ${ROUNDS} batches of ${EVENTS_PER_ROUND} new alerts per system, one batch every ${INTERVAL_MS} ms, systems interleaved:`,
  );

  const a = await verdict('A. Verdict, one filter');
  const b = await verdict(`B. Verdict, ${DISTINCT_FILTERS} distinct filters`);

  // C. Baseline: bare @fastify/websocket, the same message bytes, one Buffer for all clients.
  const bare = Fastify({ logger: false });
  await bare.register(websocket);
  const sockets = new Set<WebSocket>();
  bare.get('/', { websocket: true }, (ws) => {
    sockets.add(ws);
    ws.on('close', () => sockets.delete(ws));
  });
  await bare.listen({ host: '127.0.0.1', port: 0 });
  const c: System & { sendMs: number[] } = {
    name: 'C. baseline: bare @fastify/websocket broadcast',
    sentAt: new Map(),
    alertsAt: new Map(),
    sendMs: [],
    round(r) {
      const alerts = a.sys.last();
      const t0 = nowMs();
      const p0 = performance.now();
      const buf = Buffer.from(`{"type":"alerts","cursor":${r + 1},"alerts":[${alerts.map((x) => JSON.stringify(alertView(x))).join(',')}],"removed":[]}`);
      for (const ws of sockets) ws.send(buf, { binary: false });
      c.sendMs.push(performance.now() - p0);
      c.sentAt.set(r + 1, t0);
      c.alertsAt.set(r + 1, alerts.length);
    },
  };

  const clients = new Clients();
  const filters = distinctFilters(DISTINCT_FILTERS);
  await clients.connect([
    a.pool(Array.from({ length: CLIENTS }, () => '')),
    b.pool(Array.from({ length: CLIENTS }, (_, i) => filters[i % filters.length]!)),
    {
      url: `ws://127.0.0.1:${(bare.server.address() as AddressInfo).port}/`,
      protocols: [],
      queries: Array.from({ length: CLIENTS }, () => ''),
      waitLive: false,
    },
  ]);
  if (sockets.size !== CLIENTS) throw new Error(`baseline has ${sockets.size} clients`);
  (globalThis as { gc?: () => void }).gc?.();

  const systems: System[] = [a.sys, b.sys, c];
  const load: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of systems) {
      s.round(r);
      await sleep(INTERVAL_MS);
    }
    if (r % 20 === 0) load.push(loadavg()[0]!);
  }
  const results = await clients.collect(
    systems.map(() => ROUNDS * CLIENTS),
    30_000,
  );
  const size = Buffer.byteLength(
    `{"type":"alerts","cursor":1,"alerts":[${a.sys
      .last()
      .map((x) => JSON.stringify(alertView(x)))
      .join(',')}],"removed":[]}`,
  );
  await Promise.all([a.close(), b.close(), bare.close()]);

  console.log(
    `  (each message: ${EVENTS_PER_ROUND} alerts, ${size.toLocaleString('en-US')} bytes; load average during the run ${Math.min(...load).toFixed(1)} to ${Math.max(...load).toFixed(1)})`,
  );
  for (const [i, s] of systems.entries()) {
    const { lat, deliveries, unknown } = latencies(s, results[i]!);
    const expected = ROUNDS * CLIENTS * EVENTS_PER_ROUND;
    const missing = expected - deliveries;
    row(
      s.name,
      lat,
      `(${deliveries.toLocaleString('en-US')} deliveries${missing ? `, ${missing.toLocaleString('en-US')} MISSING` : ''}${unknown ? `, ${unknown} unknown cursors` : ''})`,
    );
    if (s === a.sys || s === b.sys) {
      const v = s === a.sys ? a.sys : b.sys;
      timeRow('    server: ingest() before the broadcast', v.storeMs);
      timeRow(`    server: broadcast to ${CLIENTS} clients`, v.broadcastMs);
    }
  }
  timeRow(`    server: serialize + send to ${CLIENTS} clients`, c.sendMs);
  if (clients.errors.length) console.log(`  client errors: ${clients.errors.join('; ')}`);
}
