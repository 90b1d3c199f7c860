import { createServer, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ALERT_SCHEMA, type AlertPayload } from '../../shared/alert/payload.js';
import { parseWebhooksJson } from '../../shared/config/webhooks-config.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { startWebhooks } from './service.js';
import { newAgent, send } from './sender.js';
import { newSecret, newWebhookId, signatureHeader } from './signer.js';
import { AddressPolicy } from '../../shared/net/ssrf.js';

// Webhook deliveries/s to a local receiver that takes LATENCY_MS to answer (a
// realistic endpoint: it writes to its own database before saying 200), for
// the whole path — alerts stored through the alert store, outbox rows written
// in that transaction, the worker claiming, signing, POSTing and recording each
// try — at several per-endpoint concurrencies. Baseline, same run: the same
// signed POSTs sent one at a time, straight from memory, no outbox.

const LATENCY_MS = Number(process.env.VERDICT_BENCH_WEBHOOK_LATENCY_MS ?? 25);
const BASELINE_N = 200;
/** Deliveries per run: enough for a few seconds at each concurrency. */
const N_FOR: Record<number, number> = { 1: 200, 4: 500, 16: 2000, 32: 2000 };
const BATCH = 100;

const log = pino({ level: 'silent' });

function receiver(): Promise<{ server: Server; url: string; received: () => number }> {
  let received = 0;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      setTimeout(() => {
        received++;
        res.writeHead(200).end();
      }, LATENCY_MS);
    });
  });
  server.keepAliveTimeout = 60_000;
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, received: () => received });
    }),
  );
}

function payload(i: number): AlertPayload {
  const t = new Date().toISOString();
  return {
    schema: ALERT_SCHEMA,
    source: 'cilium',
    fingerprint: `bench-${i}`,
    severity: 'high',
    title: `Ingress denied: shop/frontend-${i} -> shop/payments:8443/TCP`,
    description: 'Dropped by shop/payments-ingress (POLICY_DENIED).',
    cluster: 'prod',
    namespace: 'shop',
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }],
    rule: '',
    labels: { direction: 'ingress' },
    samples: [],
  };
}

const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;

async function baseline(url: string, secret: string): Promise<number> {
  const u = new URL(url);
  const policy = new AddressPolicy(['127.0.0.1']);
  const agent = newAgent(u, 1);
  const body = JSON.stringify({ type: 'alert.triggered', timestamp: new Date().toISOString(), data: { alerts: [payload(0)] } });
  const t0 = performance.now();
  for (let i = 0; i < BASELINE_N; i++) {
    const id = newWebhookId();
    const ts = Math.floor(Date.now() / 1000);
    const r = await send({
      url: u,
      body,
      timeoutMs: 15_000,
      policy,
      agent,
      headers: {
        'content-type': 'application/json',
        'webhook-id': id,
        'webhook-timestamp': String(ts),
        'webhook-signature': signatureHeader([secret], id, ts, body),
      },
    });
    if (!r.ok) throw new Error(`baseline delivery failed: ${r.error}`);
  }
  const ms = performance.now() - t0;
  agent.destroy();
  return ms;
}

async function throughOutbox(url: string, secret: string, concurrency: number, received: () => number): Promise<{ n: number; ms: number }> {
  const N = N_FOR[concurrency]!;
  const dir = mkdtempSync(join(tmpdir(), 'verdict-wh-bench-'));
  const db = openServerDb(dir);
  const store = new AlertStore(db);
  const svc = startWebhooks({
    db,
    store,
    log,
    config: parseWebhooksJson({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'bench', type: 'generic', url, secrets: [secret], concurrency }],
    }),
  });
  const start = received();
  const t0 = performance.now();
  for (let b = 0; b < N / BATCH; b++) {
    store.ingest(
      'bench',
      Array.from({ length: BATCH }, (_, k) => ({ id: `c${concurrency}-${b}-${k}`, payload: payload(b * BATCH + k) })),
    );
    // Alerts arrive over time in a real server; let the worker run between batches.
    await new Promise((r) => setImmediate(r));
  }
  while (received() - start < N) await new Promise((r) => setTimeout(r, 5));
  const ms = performance.now() - t0;
  await svc.close();
  db.close();
  rmSync(dir, { recursive: true, force: true });
  return { n: N, ms };
}

/** Cost of the outbox inside the store's transaction: ingest with and without a matching integration. */
async function enqueueOverhead(): Promise<{ without: number; withHook: number }> {
  const run = async (withIntegration: boolean) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-wh-bench-'));
    const db = openServerDb(dir);
    const store = new AlertStore(db);
    const svc = startWebhooks({
      db,
      store,
      log,
      // The worker never reaches this endpoint (port 9 is "discard"); only the enqueue is measured.
      config: parseWebhooksJson({
        allow_private_addresses: ['127.0.0.1'],
        integrations: withIntegration ? [{ name: 'x', type: 'generic', url: 'http://127.0.0.1:9/', secrets: [newSecret()], enabled: true }] : [],
      }),
    });
    await svc.worker.close();
    const events = Array.from({ length: 20_000 }, (_, i) => ({ id: `o-${i}`, payload: payload(i) }));
    const t0 = performance.now();
    for (let i = 0; i < events.length; i += 500) store.ingest('bench', events.slice(i, i + 500));
    const ms = performance.now() - t0;
    await svc.close();
    db.close();
    rmSync(dir, { recursive: true, force: true });
    return ms;
  };
  return { without: await run(false), withHook: await run(true) };
}

export default async function bench(): Promise<void> {
  const rx = await receiver();
  const secret = newSecret();
  console.log(`receiver on loopback answering after ${LATENCY_MS} ms; generic signed webhooks; node ${process.version}`);
  const baseMs = await baseline(rx.url, secret);
  console.log(`baseline: one at a time, no outbox      ${BASELINE_N} deliveries in ${Math.round(baseMs)} ms = ${rate(BASELINE_N, baseMs)}`);
  for (const c of [1, 4, 16, 32]) {
    const r = await throughOutbox(rx.url, secret, c, rx.received);
    console.log(
      `outbox + worker, concurrency ${String(c).padEnd(2)}        ${r.n} deliveries in ${Math.round(r.ms)} ms = ${rate(r.n, r.ms)}  (x${(r.n / r.ms / (BASELINE_N / baseMs)).toFixed(1)} baseline)`,
    );
  }
  const o = await enqueueOverhead();
  console.log(
    `store ingest of 20,000 new alerts: ${rate(20_000, o.without)} without integrations, ${rate(20_000, o.withHook)} with one matching integration (outbox rows in the same transaction)`,
  );
  await new Promise<void>((r) => rx.server.close(() => r()));
  rx.server.closeAllConnections();
}
