import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { uuid7 } from '../../shared/ids/uuid7.js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import * as grpc from '@grpc/grpc-js';
import Fastify from 'fastify';
import { ProjectPollers } from '../../server/config/project-poller.js';
import { addTunnelServices, StreamRegistry } from '../../server/tunnel/grpc-service.js';
import { registerAgentWebSocket } from '../../server/tunnel/ws-route.js';
import { AgentRegistry } from '../../server/agents/agent-registry.js';
import { AlertStore, type IncomingEvent } from '../../server/store/alert-store.js';
import { openServerDb } from '../../server/store/server-db.js';
import { ciliumPayload, falcoPayload } from '../../server/store/test-payloads.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { openAgentDb } from '../spool/agent-db.js';
import { Spool } from '../spool/spool.js';
import { runAlertPublisher, DEFAULT_PUBLISHER, type PublisherOptions } from './alert-publisher.js';
import { Tunnel } from './connection.js';
import { parseKasAddress } from './kas-address.js';
import { processCpuMs } from '../../bench/proc.js';
import { MAX_MESSAGE_BYTES } from '../../shared/agent-api.js';

// Alerts/s from the agent's spool to the server, per transport, on loopback:
// this process is the agent (its real publisher, reading a spool filled
// beforehand), the server is another process, so the two sides use the two
// cores as they would in production. Timing starts when the publisher starts
// and ends when the spool is empty: every alert was accepted and acknowledged.
//   1. tunnel: the server is the real tunnel service (auth, decode, payload
//      check, acks) with a sink that only counts, i.e. what the tunnel itself
//      can carry;
//   2. end to end: a real `verdict server`, alerts committed to its store.
// Baseline measured in the same run: the store's own ingest of the same
// events in batches, without any tunnel, which bounds (2).

const N = Number(process.env.VERDICT_BENCH_TUNNEL_ALERTS ?? 200_000);
const N_STORE = Number(process.env.VERDICT_BENCH_TUNNEL_STORE_ALERTS ?? 30_000);
const TARGET = 50_000;
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const AGENT = 'bench';
const silent = createRootLogger({ level: 'silent' });

function payload(i: number): AlertPayload {
  // Two thirds Cilium, one third Falco; 2,000 distinct fingerprints, so most
  // events repeat an open alert, as a steady stream does after its first minutes.
  // What a fingerprint stands for (workloads, pod) stays the same across its
  // repeats; only what Cilium leaves out of it (replica pods, ports) varies.
  const k = i % 2000;
  return i % 3 === 0
    ? falcoPayload({ fp: `falco-${k}`, pod: `web-${k % 97}` })
    : ciliumPayload({ fp: `cilium-${k}`, src: `app-${k % 31}`, dst: `svc-${k % 13}` });
}

function rate(n: number, ms: number): number {
  return Math.round((n / ms) * 1000);
}

const fmt = (n: number) => n.toLocaleString('en-US');

const cpuSeconds = (pid: number) => processCpuMs(pid) / 1000;

function storeBaseline(dir: string): number {
  const db = openServerDb(join(dir, 'baseline'));
  const store = new AlertStore(db);
  const events: IncomingEvent[] = Array.from({ length: N_STORE }, (_, i) => ({ id: uuid7(), payload: payload(i) }));
  // The server parses each payload from the wire; count that too.
  const wire = events.map((e) => Buffer.from(JSON.stringify(e.payload)));
  const t0 = performance.now();
  for (let i = 0; i < N_STORE; i += DEFAULT_PUBLISHER.batchSize) {
    const batch = events
      .slice(i, i + DEFAULT_PUBLISHER.batchSize)
      .map((e, k) => ({ id: e.id, payload: JSON.parse(wire[i + k]!.toString('utf8')) as AlertPayload }));
    store.ingest(AGENT, batch);
  }
  const ms = performance.now() - t0;
  db.close();
  return rate(N_STORE, ms);
}

interface ServerHandle {
  proc: ChildProcess;
  http: string;
  grpc: string;
}

const SELF = fileURLToPath(import.meta.url);

/** The tunnel service with a counting sink, run as `node tunnel.bench.js serve <server data dir>`. */
async function serveCountingSink(data: string): Promise<void> {
  const db = openServerDb(data);
  const grpcServer = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
  let events = 0;
  addTunnelServices(
    grpcServer,
    {
      agents: new AgentRegistry(db),
      pollers: new ProjectPollers(20_000, silent),
      log: silent,
      sink: {
        accept: async (_agent, evs) => {
          events += evs.length;
          return { stored: evs.length, duplicates: 0 };
        },
      },
    },
    new StreamRegistry(),
  );
  const port = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  const app = Fastify();
  await registerAgentWebSocket(app, { grpcServer, log: silent });
  app.get('/count', async () => ({ events }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  process.on('SIGINT', () => process.exit(0));
  process.stdout.write(`${JSON.stringify({ http_addr: `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, grpc_addr: `127.0.0.1:${port}` })}\n`);
}

if (process.argv[1] === SELF && process.argv[2] === 'serve') await serveCountingSink(process.argv[3]!);

async function startServer(data: string, counting: boolean): Promise<ServerHandle> {
  const args = counting
    ? [SELF, 'serve', data]
    : [join(ROOT, 'bin/verdict.js'), 'server', '--data-dir', data, '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'];
  // VERDICT_BENCH_SERVER_NODE_OPTIONS=--cpu-prof profiles the server side.
  const proc = spawn(process.execPath, [...(process.env.VERDICT_BENCH_SERVER_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`server did not start: ${out}${err}`)), 20_000);
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"http_addr":"([^"]+)","grpc_addr":"([^"]+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ proc, http: m[1]!, grpc: m[2]! });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited (${code}): ${out}${err}`)));
  });
}

interface Result {
  rate: number;
  /** Share of a core each side used. */
  agentCpu: number;
  serverCpu: number;
  /** CPU microseconds per alert each side spent. */
  agentUs: number;
  serverUs: number;
}

async function runTransport(transport: 'grpc' | 'ws', dir: string, opts: PublisherOptions, counting: boolean): Promise<Result> {
  const n = counting ? N : N_STORE;
  const base = join(dir, `${transport}-${opts.batchSize}-${opts.maxInFlight}-${counting ? 'tunnel' : 'store'}`);
  const project = join(base, 'project');
  mkdirSync(join(project, '.gitlab/agents', AGENT), { recursive: true });
  writeFileSync(join(project, '.gitlab/agents', AGENT, 'config.yaml'), 'observability:\n  logging:\n    level: warn\n');
  const git = (...a: string[]) =>
    execFileSync('git', ['-C', project, '-c', 'user.name=bench', '-c', 'user.email=bench@verdict.invalid', '-c', 'commit.gpgsign=false', ...a]);
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'bench');
  const serverData = join(base, 'server');
  const sdb = openServerDb(serverData);
  const { token } = new AgentRegistry(sdb).register(AGENT, project);
  sdb.close();

  // Fill the spool first; the benchmark measures sending it.
  const adb = openAgentDb(join(base, 'agent'));
  const outbox = new Spool(adb, { maxBytes: 4 * 1024 * 1024 * 1024, log: silent });
  for (let i = 0; i < n; i += 5000) outbox.add(Array.from({ length: Math.min(5000, n - i) }, (_, k) => payload(i + k)));

  const server = await startServer(serverData, counting);
  const kas = transport === 'grpc' ? `grpc://${server.grpc}` : `ws://${server.http}/-/kubernetes-agent/`;
  const tunnel = await Tunnel.open({ address: parseKasAddress(kas), token, log: silent });
  const abort = new AbortController();
  const serverCpu0 = cpuSeconds(server.proc.pid!);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const loop = runAlertPublisher(tunnel, outbox, { initialMs: 100, maxMs: 1000 }, silent, abort.signal, opts);
  await new Promise<void>((resolve) => {
    const check = () => (outbox.size === 0 ? resolve() : setTimeout(check, 2));
    check();
  });
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const serverCpu = cpuSeconds(server.proc.pid!) - serverCpu0;
  abort.abort();
  await loop;
  await tunnel.close();
  let stored: number;
  if (counting) {
    stored = ((await (await fetch(`http://${server.http}/count`)).json()) as { events: number }).events;
  } else {
    const check = new Database(join(serverData, 'server.db'), { readonly: true });
    stored = (check.prepare('SELECT count(*) AS n FROM alert_events').get() as { n: number }).n;
    check.close();
  }
  server.proc.kill(process.env.VERDICT_BENCH_SERVER_NODE_OPTIONS ? 'SIGINT' : 'SIGKILL');
  adb.close();
  if (stored !== n) throw new Error(`${transport}: the server accepted ${stored} events, expected ${n}`);
  return {
    rate: rate(n, ms),
    agentCpu: (cpu.user + cpu.system) / 1000 / ms,
    serverCpu: (serverCpu * 1000) / ms,
    agentUs: (cpu.user + cpu.system) / n,
    serverUs: (serverCpu * 1e6) / n,
  };
}

export default async function tunnelBench(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-tunnel-bench-'));
  try {
    console.log(
      `alerts (cilium and falco, ~1 KB each) from a full spool; agent in this process, server a separate process; ${cpus().length} cores, ${cpus()[0]?.model ?? ''}, node ${process.version}, load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    );
    // On a shared machine wall-clock rates move with the neighbours' load; CPU time per alert
    // moves much less, and bounds the rate each side could reach with a core to itself.
    console.log('columns: wall-clock rate; CPU µs per alert, agent/server; the rate the busier side allows with a core of its own');
    const baseline = storeBaseline(dir);
    console.log(
      `baseline: store ingest alone (JSON parse + AlertStore.ingest, batches of ${DEFAULT_PUBLISHER.batchSize}, one process, ${fmt(N_STORE)} events): ${fmt(baseline)} alerts/s`,
    );
    const variants: PublisherOptions[] = process.env.VERDICT_BENCH_TUNNEL_SWEEP
      ? [
          { batchSize: 200, maxInFlight: 4 },
          { batchSize: 500, maxInFlight: 2 },
          DEFAULT_PUBLISHER,
          { batchSize: 1000, maxInFlight: 4 },
          { batchSize: 2000, maxInFlight: 4 },
        ]
      : [DEFAULT_PUBLISHER];
    for (const counting of [true, false]) {
      console.log(
        counting
          ? `\n1. tunnel (server: tunnel service, counting sink; ${fmt(N)} alerts)`
          : `\n2. end to end (server: verdict server, SQLite store; ${fmt(N_STORE)} alerts)`,
      );
      for (const v of counting ? variants : [DEFAULT_PUBLISHER]) {
        const results: Record<string, number> = {};
        for (const t of ['grpc', 'ws'] as const) {
          const r = await runTransport(t, dir, v, counting);
          results[t] = r.rate;
          const bound = Math.round(1e6 / Math.max(r.agentUs, r.serverUs));
          console.log(
            `  ${t.padEnd(4)} batch ${v.batchSize}, in flight ${v.maxInFlight}: ${fmt(r.rate).padStart(8)} alerts/s; CPU ${r.agentUs.toFixed(1)}/${r.serverUs.toFixed(1)} µs per alert (agent ${(r.agentCpu * 100).toFixed(0)}%, server ${(r.serverCpu * 100).toFixed(0)}% of a core); ${fmt(bound)} alerts/s with a core each`,
          );
        }
        const ratio = results.ws! / results.grpc!;
        console.log(
          `  ws/grpc ${(ratio * 100).toFixed(0)}% (target >= 70%: ${ratio >= 0.7 ? 'met' : 'NOT met'}); grpc ${results.grpc! >= TARGET ? '>=' : '<'} ${fmt(TARGET)}/s target${counting ? '' : `; ${Math.round((results.grpc! / baseline) * 100)}% of the store baseline`}`,
        );
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
