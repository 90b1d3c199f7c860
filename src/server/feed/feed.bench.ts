import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';
import { WebSocketServer } from 'ws';
import { createRootLogger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload } from '../store/test-payloads.js';
import { buildHttpServer } from './http-server.js';

// Delivery latency of the live stream: 500 WebSocket clients (in a worker
// thread, so they do not share the server's event loop) each receive every
// stored change; latency is from just before ingest() is called to the
// client's receipt of the alert. Baseline, same run and same clients: a bare
// `ws` server broadcasting a prebuilt message of the same size (no store, no
// filters, no serialization).

const CLIENTS = 500;
const ROUNDS = 200;
const EVENTS_PER_ROUND = 5;
const INTERVAL_MS = 50;

const CLIENT_CODE = `
const { parentPort, workerData } = require('node:worker_threads');
const WebSocket = require('ws');
const { url, clients, protocols, expect } = workerData;
const now = () => performance.timeOrigin + performance.now();
const lat = [];
let ready = 0, got = 0;
for (let i = 0; i < clients; i++) {
  const ws = new WebSocket(url, protocols);
  ws.on('message', (d) => {
    const t = now();
    const s = String(d);
    if (s.startsWith('{"type":"live"')) { if (++ready === clients) parentPort.postMessage({ ready: true }); return; }
    // Each alert carries its send time in its title: "bench <ms>".
    const re = /"title":"bench ([0-9.]+)"/g;
    let m;
    while ((m = re.exec(s))) { lat.push(t - Number(m[1])); got++; }
    if (got === expect * clients) parentPort.postMessage({ lat });
  });
  ws.on('open', () => { if (protocols.length === 0 && ++ready === clients) parentPort.postMessage({ ready: true }); });
  ws.on('error', (e) => parentPort.postMessage({ error: e.message }));
}
`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

function clientsFor(url: string, protocols: string[], expect: number): { ready: Promise<void>; done: Promise<number[]>; worker: Worker } {
  const worker = new Worker(CLIENT_CODE, { eval: true, workerData: { url, clients: CLIENTS, protocols, expect } });
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const done = new Promise<number[]>((resolve, reject) => {
    worker.on('message', (m: { ready?: boolean; lat?: number[]; error?: string }) => {
      if (m.ready) onReady();
      if (m.lat) resolve(m.lat);
      if (m.error) reject(new Error(m.error));
    });
    worker.on('error', reject);
  });
  return { ready, done, worker };
}

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function report(name: string, lat: number[]): void {
  console.log(`  ${name.padEnd(34)} p50 ${pct(lat, 50).toFixed(1).padStart(6)} ms  p99 ${pct(lat, 99).toFixed(1).padStart(6)} ms  max ${lat.reduce((a, b) => Math.max(a, b), 0).toFixed(1).padStart(6)} ms  (${lat.length.toLocaleString('en-US')} deliveries)`);
}

export default async function run(): Promise<void> {
  console.log(`live stream: ${CLIENTS} WebSocket clients, ${ROUNDS} batches of ${EVENTS_PER_ROUND} alerts every ${INTERVAL_MS} ms:`);

  // Verdict: store + stream hub + fastify, clients authenticated by subprotocol.
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const token = tokens.create('bench', 'read').token;
  const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'bench', level: 'silent' }), ready: () => true });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const c = clientsFor(`ws://127.0.0.1:${port}/api/v1/alerts/stream`, ['verdict.v1', `bearer.${token}`], ROUNDS * EVENTS_PER_ROUND);
  await c.ready;
  let sample = '';
  let k = 0;
  const busy: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = now();
    const events = [];
    for (let i = 0; i < EVENTS_PER_ROUND; i++) {
      const p = ciliumPayload({ fp: `bench-${k}` });
      p.title = `bench ${t0}`;
      events.push({ id: `bench-ev-${k++}`, payload: p });
    }
    const t1 = performance.now();
    const changed = store.ingest('bench', events).alerts;
    busy.push(performance.now() - t1);
    if (!sample) sample = JSON.stringify({ type: 'alerts', cursor: 1, alerts: changed, removed: [] });
    await sleep(INTERVAL_MS);
  }
  const verdict = await c.done;
  await c.worker.terminate();
  await app.close();
  db.close();

  // Baseline: a bare ws server sending a prebuilt message of the same size.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const b = clientsFor(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`, [], ROUNDS * EVENTS_PER_ROUND);
  await b.ready;
  const template = sample.replace(/"title":"bench [0-9.]+"/g, '"title":"bench T"');
  for (let r = 0; r < ROUNDS; r++) {
    const msg = template.replaceAll('"title":"bench T"', `"title":"bench ${now()}"`);
    for (const ws of wss.clients) ws.send(msg);
    await sleep(INTERVAL_MS);
  }
  const baseline = await b.done;
  await b.worker.terminate();
  wss.close();

  report('Verdict (store -> stream -> client)', verdict);
  console.log(`  ${'  server time per batch (store + send)'.padEnd(34)} p50 ${pct(busy, 50).toFixed(1).padStart(6)} ms  p99 ${pct(busy, 99).toFixed(1).padStart(6)} ms`);
  report('baseline: bare ws broadcast', baseline);
}
