import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { pino } from 'pino';
import { scenarioEvent, toFalcoJson } from '../../../peers/falco/scenario.js';
import type { AlertPayload } from '../../../shared/alert/payload.js';
import { AlertAggregator } from '../../alert/aggregator.js';
import { openAgentDb } from '../../spool/agent-db.js';
import { Outbox } from '../../spool/outbox.js';
import { loadFalcoDefaults } from './defaults.js';
import { startFalcoHttpInput } from './http.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

// Events/s the HTTP input accepts (each answered only after its SQLite commit)
// and p99 time to answer, against a bare node:http server that answers 200
// without any work, measured in the same run with the same load generator.
//
// The load generator is a separate process on raw keep-alive sockets (a small
// HTTP/1.1 client, like wrk or autocannon) so that neither node's own HTTP
// client nor the generator's CPU time counts against the server; each
// connection sends one request at a time, as Falco's libcurl does. Besides
// wall-clock rates the server's CPU time per event is reported: on a shared
// machine it is the steadier figure (1e6 / (CPU µs per event) is the rate one
// free core would give).

const CONNECTIONS = 32;
const WARMUP = 5_000;
const REQUESTS = 60_000;

const LOADGEN = `
const net = require('node:net');
process.once('message', (cfg) => run(cfg));
function run({ port, bodies, total, connections, uuidBase }) {
const PLACEHOLDER = '00000000-0000-4000-8000-000000000000';
const reqs = bodies.map((b) => Buffer.concat([
  Buffer.from('POST / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Type: application/json\\r\\nContent-Length: ' + Buffer.byteLength(b) + '\\r\\n\\r\\n'),
  Buffer.from(b),
]));
const lat = new Float64Array(total);
let sent = 0, done = 0, non2xx = 0;
const start = process.hrtime.bigint();
function conn() {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let buf = Buffer.alloc(0), t0 = 0n, idx = -1;
  const send = () => {
    if (sent >= total) { s.end(); return; }
    idx = sent++;
    let r = reqs[idx % reqs.length];
    const at = r.indexOf(PLACEHOLDER);
    if (at >= 0) {
      // Falcosidekick sends a fresh random uuid per event; an odd multiplier mod 2^48
      // scatters them like random ones while keeping them unique.
      r = Buffer.from(r);
      const id = (BigInt(uuidBase + idx) * 0x9E3779B97F4Bn) & 0xFFFFFFFFFFFFn;
      r.write(id.toString(16).padStart(12, '0'), at + 24, 'latin1');
    }
    t0 = process.hrtime.bigint();
    s.write(r);
  };
  s.on('connect', send);
  s.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const h = buf.indexOf('\\r\\n\\r\\n');
      if (h < 0) return;
      const head = buf.toString('latin1', 0, h);
      const m = /content-length: *(\\d+)/i.exec(head);
      const len = m ? Number(m[1]) : 0;
      if (buf.length < h + 4 + len) return;
      const status = Number(head.slice(9, 12));
      if (status < 200 || status > 299) non2xx++;
      buf = buf.subarray(h + 4 + len);
      lat[idx] = Number(process.hrtime.bigint() - t0) / 1e6;
      done++;
      if (done === total) {
        const secs = Number(process.hrtime.bigint() - start) / 1e9;
        process.send({ secs, non2xx, lat }, () => process.exit(0));
      }
      send();
    }
  });
  s.on('error', (e) => { process.send({ error: e.message }, () => process.exit(1)); });
}
for (let i = 0; i < connections; i++) conn();
}
`;

interface LoadResult {
  secs: number;
  non2xx: number;
  lat: Float64Array;
  /** This process's CPU time during the run, microseconds (user + system). */
  cpuUs: number;
}

function load(port: number, bodies: string[], total: number, uuidBase = 0): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', LOADGEN], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    const cpu0 = process.cpuUsage();
    child.once('message', (m: Omit<LoadResult, 'cpuUs'> & { error?: string }) => {
      const cpu = process.cpuUsage(cpu0);
      if (m.error) reject(new Error(`load generator: ${m.error}`));
      else resolve({ ...m, cpuUs: cpu.user + cpu.system });
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code) reject(new Error(`load generator exited with ${code}`));
    });
    child.send({ port, bodies, total, connections: CONNECTIONS, uuidBase });
  });
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function report(name: string, r: LoadResult, extra = ''): string {
  const sorted = Float64Array.from(r.lat).sort();
  const rate = Math.round(r.lat.length / r.secs);
  const cpuPerEvent = r.cpuUs / r.lat.length;
  return `| ${name} | ${rate.toLocaleString('en-US')} | ${pct(sorted, 0.5).toFixed(2)} | ${pct(sorted, 0.99).toFixed(2)} | ${sorted[sorted.length - 1]!.toFixed(1)} | ${cpuPerEvent.toFixed(1)} | ${Math.round(1e6 / cpuPerEvent).toLocaleString('en-US')} | ${r.non2xx} | ${extra} |`;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** The scenario's seven rules over `pods` pods: 7 x pods fingerprints, cycling. */
function bodies(pods: number, uuid: boolean): string[] {
  return Array.from({ length: 7 * pods }, (_, i) => {
    const ev = scenarioEvent(i, new Date());
    if (uuid) ev.uuid = '00000000-0000-4000-8000-000000000000';
    ev.output_fields['k8s.pod.name'] = `web-${i % pods}`;
    ev.output_fields['ka.target.name'] = `web-${i % pods}`;
    return toFalcoJson(ev);
  });
}

async function baseline(b: string[]): Promise<string> {
  const ok = Buffer.from('{"status":"queued"}');
  const server = createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': ok.length });
      res.end(ok);
    });
  });
  const port = await listen(server);
  await load(port, b, WARMUP);
  const r = await load(port, b, REQUESTS);
  server.closeAllConnections();
  server.close();
  return report('bare node:http, answers 200 (baseline)', r);
}

async function falco(name: string, b: string[], windowMs: number, noopAggregator = false): Promise<string> {
  const log = pino({ level: 'silent' });
  const dir = mkdtempSync(join(tmpdir(), 'verdict-falco-bench-'));
  const db = openAgentDb(dir);
  const outbox = new Outbox(db, { maxBytes: 8 * 1024 ** 3, log });
  const alerts = new AlertAggregator(db, outbox, { log });
  alerts.start();
  const builder = new FalcoAlertBuilder({ cluster_name: 'bench', minimum_priority: 'Debug', rules: {}, custom_fields: {}, custom_tags: [], fingerprint_fields: undefined }, loadFalcoDefaults());
  // The no-op variant isolates this module's own cost from the aggregator's writes.
  const sink = new FalcoSink(db, noopAggregator ? { add: () => undefined } : alerts, { uuidCacheSize: 100_000, windowMs, log });
  const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1024 * 1024, builder, sink, log });
  try {
    await load(input.port, b, WARMUP);
    alerts.flush(true);
    outbox.removeUpTo(Number.MAX_SAFE_INTEGER);
    const r = await load(input.port, b, REQUESTS, WARMUP);
    await sink.drain();
    alerts.flush(true);
    let occurrences = 0;
    let rows = 0;
    for (let after = 0; ;) {
      const page = outbox.read(after, 10_000);
      if (page.length === 0) break;
      for (const p of page) occurrences += (JSON.parse(p.payload.toString('utf8')) as AlertPayload).count;
      rows += page.length;
      after = page[page.length - 1]!.seq;
    }
    return report(name, r, `${occurrences.toLocaleString('en-US')} occurrences in ${rows.toLocaleString('en-US')} spooled alerts`);
  } finally {
    await input.close();
    alerts.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export default async function (): Promise<void> {
  console.log(`Falco HTTP input: ${REQUESTS.toLocaleString('en-US')} POSTs of one event each, ${CONNECTIONS} keep-alive connections, loopback; node ${process.version}`);
  console.log('');
  console.log('| server | events/s | p50 ms | p99 ms | max ms | server CPU µs/event | events/s per free core | non-2xx | reached the spool |');
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---|');
  const spread = bodies(200, false);
  console.log(await baseline(spread));
  console.log(await falco('Falco input: 1,400 fingerprints cycling, dedup window 60 s', spread, 60_000));
  console.log(await falco('Falco input: same, Falcosidekick events (uuid checked)', bodies(200, true), 60_000));
  console.log(await falco('Falco input: noisy rules, 14 fingerprints, dedup window 60 s', bodies(2, false), 60_000));
  console.log(await falco('Falco input: 1,400 fingerprints, no dedup window', spread, 0));
  console.log(await falco('diagnostic: uuid row with the aggregator replaced by a no-op', bodies(200, true), 60_000, true));
  console.log('');
  console.log(`load average after the run: ${loadavg().map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores)`);
}
