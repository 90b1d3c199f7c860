import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { AlertAggregator } from '../../agent/alerts/aggregator.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';
import { Spool } from '../../agent/spool/spool.js';
import { loadFalcoDefaults } from './defaults.js';
import { startFalcoHttpInput } from './http.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

// Events/s the HTTP input accepts (each answered only once it is stored in the
// inbox, sink.ts) and turns into alerts, and the time to answer a POST,
// against a bare node:http server that answers 200 without any work, measured
// in the same run with the same load generator.
//
// Three processes: this one only orchestrates; the server under test (the
// Falco input with its inbox and SQLite store, or the bare baseline) runs in a
// child process pinned to one core with taskset when available; the load generator
// (raw keep-alive sockets, a small HTTP/1.1 client like wrk) runs in another
// child pinned to the other core. Each connection sends one request at a time
// and waits for the answer, as Falco's libcurl and Falcosidekick do; several
// connections are several Falco instances. The server reports its own CPU
// time (user + system, including garbage collection and the work done after
// the answers, until the occurrences of every accepted event are written) so
// that "CPU µs per event" is comparable across runs on a noisy machine. At the
// end the dedup windows are flushed and the spooled alerts' counts summed:
// every accepted event (warm-up included) must have reached the spool.
//
// VERDICT_BENCH_CPU_PROF=<dir> writes a V8 CPU profile of each server child there;
// VERDICT_BENCH_PARTS=1 prints the p99 of every 5,000 requests (to see where slow answers cluster).

const CONNECTIONS = 32;
const WARMUP = 10_000;
const REQUESTS = 60_000;
const ROLE_ENV = 'VERDICT_FALCO_BENCH_ROLE';

const LOADGEN = `
const net = require('node:net');
process.once('message', (cfg) => run(cfg));
function run({ port, bodies, warmup, total, connections, gzip }) {
const PLACEHOLDER = '00000000-0000-4000-8000-000000000000';
const reqs = bodies.map((text) => {
  const b = gzip ? require('node:zlib').gzipSync(text) : Buffer.from(text);
  return Buffer.concat([
    Buffer.from('POST /falco HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nContent-Type: application/json\\r\\n' + (gzip ? 'Content-Encoding: gzip\\r\\n' : '') + 'Content-Length: ' + b.length + '\\r\\n\\r\\n'),
    b,
  ]);
});
// One continuous stream on the same keep-alive connections: the first
// \`warmup\` requests warm both sides up (JIT, SQLite caches, dedup groups),
// the rest are measured; the parent hears when the first measured one is sent.
const all = warmup + total, lat = new Float64Array(total);
let sent = 0, done = 0, non2xx = 0, start = 0n;
function conn() {
  const s = net.connect(port, '127.0.0.1');
  s.setNoDelay(true);
  let buf = Buffer.alloc(0), t0 = 0n, idx = -1;
  const send = () => {
    if (sent >= all) return;
    idx = sent++;
    if (idx === warmup) {
      start = process.hrtime.bigint();
      process.send({ mark: true });
    }
    let r = reqs[idx % reqs.length];
    const at = r.indexOf(PLACEHOLDER);
    if (at >= 0) {
      // Falcosidekick sends a fresh random uuid per event; an odd multiplier mod 2^48
      // scatters them like random ones while keeping them unique.
      r = Buffer.from(r);
      const id = (BigInt(idx) * 0x9E3779B97F4Bn) & 0xFFFFFFFFFFFFn;
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
      if ((status < 200 || status > 299) && idx >= warmup) non2xx++;
      buf = buf.subarray(h + 4 + len);
      if (idx >= warmup) lat[idx - warmup] = Number(process.hrtime.bigint() - t0) / 1e6;
      if (++done === all) {
        const secs = Number(process.hrtime.bigint() - start) / 1e9;
        return process.send({ secs, non2xx, lat }, () => process.exit(0));
      }
      send();
    }
  });
  s.on('error', (e) => { process.send({ error: e.message }, () => process.exit(1)); });
}
for (let i = 0; i < connections; i++) conn();
}
`;

// ---------------------------------------------------------------------------
// Orchestrator side.

interface ServerSpec {
  kind: 'bare' | 'falco';
  windowMs?: number;
}

interface ServerStats {
  /** CPU time of the server process from the start of the measured load until every event was processed, µs. */
  cpuUs: number;
  gcMs: number;
  /** Events not yet turned into alert occurrences when the last answer was sent, and how long they took. */
  backlog: number;
  drainMs: number;
  occurrences: number;
  spooled: number;
}

interface LoadResult {
  secs: number;
  non2xx: number;
  lat: Float64Array;
}

let pinning: { server: string[]; loadgen: string[] } | undefined;

/** taskset prefixes that put the server and the load generator on different cores, when possible. */
function pin(): { server: string[]; loadgen: string[] } {
  if (pinning) return pinning;
  const ok = cpus().length >= 2 && spawnSync('taskset', ['-c', '0', 'true']).status === 0;
  pinning = ok ? { server: ['taskset', '-c', '0'], loadgen: ['taskset', '-c', '1'] } : { server: [], loadgen: [] };
  return pinning;
}

function spawnPinned(prefix: string[], args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const [cmd, ...rest] = prefix.length ? [...prefix, process.execPath, ...args] : [process.execPath, ...args];
  return spawn(cmd!, rest, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', env: env ?? process.env });
}

/** WARMUP requests, then REQUESTS measured ones in the same stream; `mark` runs when the first measured one is sent. */
function load(port: number, bodies: string[], mark: () => Promise<unknown>, gzip = false): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawnPinned(pin().loadgen, ['-e', LOADGEN]);
    child.on('message', (m: LoadResult & { error?: string; mark?: boolean }) => {
      if (m.error) reject(new Error(`load generator: ${m.error}`));
      else if (m.mark) mark().catch(reject);
      else resolve(m);
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code) reject(new Error(`load generator exited with ${code}`));
    });
    child.send({ port, bodies, warmup: WARMUP, total: REQUESTS, connections: CONNECTIONS, gzip });
  });
}

/** The server under test in its own process; ask() sends one command and waits for its answer. */
function startServer(spec: ServerSpec): Promise<{ port: number; ask: <T>(op: string) => Promise<T>; child: ChildProcess }> {
  const prof = process.env.VERDICT_BENCH_CPU_PROF;
  const args = [...(prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : []), fileURLToPath(import.meta.url)];
  const child = spawnPinned(pin().server, args, { ...process.env, [ROLE_ENV]: 'server' });
  let waiting: ((m: unknown) => void) | undefined;
  child.on('message', (m) => waiting?.(m));
  const ask = <T>(op: string, extra: object = {}) =>
    new Promise<T>((resolve, reject) => {
      waiting = (m) => ((m as { error?: string }).error ? reject(new Error((m as { error: string }).error)) : resolve(m as T));
      child.send({ op, ...extra });
    });
  return ask<{ port: number }>('start', spec).then(({ port }) => ({ port, ask, child }));
}

function pct(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

function row(name: string, r: LoadResult, s: ServerStats, spool: boolean): string {
  if (process.env.VERDICT_BENCH_PARTS) {
    const part = (a: number) => pct(Float64Array.from(r.lat.subarray(a, a + 5000)).sort(), 0.99).toFixed(1);
    console.error(name.slice(0, 30), 'p99 per 5000:', Array.from({ length: r.lat.length / 5000 }, (_, k) => part(k * 5000)).join(' '));
  }
  const sorted = Float64Array.from(r.lat).sort();
  const n = r.lat.length;
  const rate = Math.round(n / r.secs);
  const cpuPerEvent = s.cpuUs / n;
  const busy = s.cpuUs / 1e6 / (r.secs + s.drainMs / 1e3);
  const reached = spool
    ? `${s.occurrences.toLocaleString('en-US')} of ${(WARMUP + n).toLocaleString('en-US')} in ${s.spooled.toLocaleString('en-US')} alerts`
    : '';
  return `| ${name} | ${rate.toLocaleString('en-US')} | ${pct(sorted, 0.5).toFixed(2)} | ${pct(sorted, 0.99).toFixed(2)} | ${sorted[n - 1]!.toFixed(1)} | ${cpuPerEvent.toFixed(1)} | ${Math.round(1e6 / cpuPerEvent).toLocaleString('en-US')} | ${(busy * 100).toFixed(0)}% | ${((s.gcMs * 1e3) / n).toFixed(1)} | ${s.backlog.toLocaleString('en-US')} / ${s.drainMs.toFixed(0)} ms | ${r.non2xx} | ${reached} |`;
}

async function measure(name: string, spec: ServerSpec, b: string[], gzip = false): Promise<string> {
  const server = await startServer(spec);
  try {
    const r = await load(server.port, b, () => server.ask('mark'), gzip);
    const s = await server.ask<ServerStats>('finish');
    return row(name, r, s, spec.kind === 'falco');
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => (server.child.exitCode !== null ? resolve(null) : server.child.once('exit', resolve)));
  }
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

export default async function (): Promise<void> {
  const p = pin();
  const spread = bodies(200, false);
  const avg = Math.round(spread.reduce((n, s) => n + Buffer.byteLength(s), 0) / spread.length);
  console.log(
    `Falco HTTP input: ${REQUESTS.toLocaleString('en-US')} POSTs measured after ${WARMUP.toLocaleString('en-US')} of warm-up in the same stream, one event each (${avg} bytes on average), ${CONNECTIONS} keep-alive connections, loopback; node ${process.version}; ` +
      (p.server.length ? 'server pinned to core 0, load generator to core 1 (taskset)' : 'not pinned (no taskset or one core)'),
  );
  console.log(
    `load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (${cpus().length} cores)`,
  );
  console.log('');
  console.log(
    '| server | events/s | p50 ms | p99 ms | max ms | server CPU µs/event | events/s per core | server core busy | GC µs/event | inbox not yet written at last answer / written in | non-2xx | reached the spool |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  console.log(await measure('bare node:http, answers 200 (baseline)', { kind: 'bare' }, spread));
  console.log(await measure('Falco: 1,400 fingerprints cycling, dedup window 60 s', { kind: 'falco', windowMs: 60_000 }, spread));
  console.log(await measure('Falco: same, Falcosidekick events (uuid checked)', { kind: 'falco', windowMs: 60_000 }, bodies(200, true)));
  console.log(await measure('Falco: noisy rules, 14 fingerprints, dedup window 60 s', { kind: 'falco', windowMs: 60_000 }, bodies(2, false)));
  console.log(await measure('Falco: 1,400 fingerprints, gzip bodies (compress_uploads)', { kind: 'falco', windowMs: 60_000 }, spread, true));
  console.log(await measure('Falco: 1,400 fingerprints, dedup window 1 s (groups close and reopen)', { kind: 'falco', windowMs: 1_000 }, spread));
  console.log(await measure('Falco: 1,400 fingerprints, no dedup window', { kind: 'falco', windowMs: 0 }, spread));
  console.log(await measure('bare node:http again (baseline drift)', { kind: 'bare' }, spread));
  console.log('');
  console.log(
    `load average after: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} (${cpus().length} cores)`,
  );
}

// ---------------------------------------------------------------------------
// Server side (child process).

interface Running {
  port: number;
  /** Resolves when every accepted event is an alert occurrence (pending in the aggregator or spooled). */
  settle(): Promise<{ backlog: number }>;
  /** Flushes the de-dup windows and counts the spool. */
  count(): { occurrences: number; spooled: number };
  close(): Promise<void>;
}

async function startBare(): Promise<Running> {
  const ok = Buffer.from('{"status":"queued"}');
  const server = createServer((req, res) => {
    req.on('data', () => undefined);
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': ok.length });
      res.end(ok);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    settle: () => Promise.resolve({ backlog: 0 }),
    count: () => ({ occurrences: 0, spooled: 0 }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function startFalcoServer(spec: ServerSpec): Promise<Running> {
  const log = pino({ level: 'silent' });
  const dir = mkdtempSync(join(tmpdir(), 'verdict-falco-bench-'));
  const db = openAgentDb(dir);
  const outbox = new Spool(db, { maxBytes: 8 * 1024 ** 3, log });
  const alerts = new AlertAggregator(db, outbox, { log });
  alerts.start();
  const builder = new FalcoAlertBuilder(
    { cluster_name: 'bench', minimum_priority: 'Debug', rules: {}, custom_fields: {}, custom_tags: [], fingerprint_fields: undefined },
    loadFalcoDefaults(),
  );
  const sink = new FalcoSink(db, alerts, { uuidCacheSize: 100_000, windowMs: spec.windowMs ?? 60_000, builder, log });
  const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1024 * 1024, builder, sink, log });
  return {
    port: input.port,
    settle: async () => {
      const backlog = sink.queued + sink.unwritten;
      await sink.settle();
      return { backlog };
    },
    count: () => {
      alerts.flush(true);
      let occurrences = 0;
      let spooled = 0;
      for (let after = 0; ; ) {
        const page = outbox.read(after, 10_000);
        if (page.length === 0) break;
        for (const p of page) occurrences += (JSON.parse(p.payload.toString('utf8')) as AlertPayload).count;
        spooled += page.length;
        after = page[page.length - 1]!.seq;
      }
      return { occurrences, spooled };
    },
    close: async () => {
      await input.close();
      await sink.close();
      alerts.stop();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function serve(): void {
  let running: Running | undefined;
  let cpu0 = process.cpuUsage();
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  }).observe({ entryTypes: ['gc'] });
  process.on('message', (m: { op: string } & ServerSpec) => {
    void (async () => {
      switch (m.op) {
        case 'start':
          running = m.kind === 'bare' ? await startBare() : await startFalcoServer(m);
          return { port: running.port };
        case 'mark':
          // The measured requests begin: CPU and GC time count from here.
          gcMs = 0;
          cpu0 = process.cpuUsage();
          return {};
        case 'finish': {
          const t = performance.now();
          const { backlog } = await running!.settle();
          const drainMs = performance.now() - t;
          const cpu = process.cpuUsage(cpu0);
          const stats: ServerStats = { cpuUs: cpu.user + cpu.system, gcMs, backlog, drainMs, ...running!.count() };
          return stats;
        }
        default:
          throw new Error(`unknown op ${m.op}`);
      }
    })().then(
      (r) => process.send!(r),
      (e: Error) => process.send!({ error: e.stack ?? e.message }),
    );
  });
  process.once('SIGTERM', () => {
    void (running?.close() ?? Promise.resolve()).then(() => process.exit(0));
  });
}

function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (process.env[ROLE_ENV] === 'server' && isMain()) serve();
