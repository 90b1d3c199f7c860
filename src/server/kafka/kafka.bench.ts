import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { ciliumPayload, falcoPayload } from '../store/test-payloads.js';
import { startBroker, stopBroker, TestPublisher } from './testing.js';
import { uuid7 } from '../../shared/ids/uuid7.js';
import { processCpuMs } from '../../bench/proc.js';

// Alerts/s through `verdict server` processes, fed over the real gRPC agent API
// (batches of 500, 4 in flight per stream, like the agent), measured until every
// replica has stored every alert:
//   baseline  one server on SQLite alone (no kafka: block), same load
//   1 replica one server on Kafka: produce (acks=all) before the ack, then project
//   2 replicas two servers on the same broker, one stream each; every replica
//             stores every alert, so each stores twice what it received
// "accepted" is when the last batch was acknowledged (the agent may delete it).
// The broker is scripts/kafka.sh's single node, on the same machine.
// "cpu/event" is the servers' own CPU (user+sys, from /proc, all replicas
// summed) from the first batch until they are idle again (delivery and export
// included), per event sent; "x" is its ratio to the baseline of the same run.

const BIN = fileURLToPath(new URL('../../../bin/verdict.js', import.meta.url));
const EVENTS = Number(process.env.VERDICT_BENCH_KAFKA_EVENTS ?? 60_000);
const BATCH = 500;
const IN_FLIGHT = 4;
const FINGERPRINTS = 5_000;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

interface Proc {
  child: ChildProcess;
  http: string;
  grpc: string;
  dataDir: string;
}

async function startServer(dir: string, name: string, kafka: string | undefined): Promise<Proc> {
  const dataDir = join(dir, name);
  const http = `127.0.0.1:${await freePort()}`;
  const grpc = `127.0.0.1:${await freePort()}`;
  const config = join(dir, `${name}.yaml`);
  writeFileSync(config, `data_dir: ${dataDir}\nhttp_addr: ${http}\ngrpc_addr: ${grpc}\n${kafka ?? ''}`);
  // VERDICT_BENCH_SERVER_NODE_OPTIONS=--cpu-prof profiles the servers.
  const child = spawn(
    process.execPath,
    [...(process.env.VERDICT_BENCH_SERVER_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []), BIN, 'server', '--config', config],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VERDICT_LOG_LEVEL: process.env.VERDICT_BENCH_SERVER_LOGS ?? 'warn' } },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  if (process.env.VERDICT_BENCH_SERVER_LOGS) child.stdout!.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d.toString()}`));
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server ${name} exited: ${out}`);
    try {
      if ((await fetch(`http://${http}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() - t0 > 60_000) throw new Error(`server ${name} not ready after 60 s: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, http, grpc, dataDir };
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

function register(p: Proc): string {
  // The agent sends alerts only; its configuration project is an empty repository.
  const project = mkdtempSync(join(tmpdir(), 'verdict-bench-project-'));
  execFileSync('git', ['init', '-q', project]);
  return execFileSync(process.execPath, [BIN, 'agents', 'register', 'bench', '--config-project', project, '--data-dir', p.dataDir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

/** Events stored or recognised as repeats by a replica, from its /metrics. */
async function projected(p: Proc, kafka: boolean): Promise<number> {
  const text = await (await fetch(`http://${p.http}/metrics`)).text();
  const re = kafka
    ? /^verdict_kafka_projected_events_total\{type="alert",result="(stored|duplicate)"\} (\d+)/gm
    : /^verdict_server_alerts_received_total\{result="(stored|duplicate)"\} (\d+)/gm;
  let n = 0;
  for (const m of text.matchAll(re)) n += Number(m[2]);
  return n;
}

function payload(i: number, t: string): AlertPayload {
  const fp = `bench-${i % FINGERPRINTS}`;
  return i % 3 === 0 ? falcoPayload({ fp, time: t }) : ciliumPayload({ fp, time: t });
}

/** Sends `n` events over one stream, IN_FLIGHT batches at a time; resolves at the last acknowledgement. */
async function send(p: Proc, token: string, n: number, offset: number): Promise<void> {
  const pub = new TestPublisher(p.grpc, token);
  try {
    let next = 0;
    const t = new Date().toISOString();
    const lane = async () => {
      while (next < n) {
        const from = next;
        next = Math.min(n, next + BATCH);
        const events = [];
        for (let i = from; i < next; i++) events.push({ id: uuid7(), payload: payload(offset + i, t) });
        await pub.send(events, 120_000);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane));
  } finally {
    pub.close();
  }
}

interface Result {
  accepted: number;
  stored: number;
  /** Server CPU (user+sys) in ms, all servers of the row. */
  cpuMs: number;
  /** The broker's CPU in the same span, ms. */
  brokerMs: number;
  /** Kafka rows: of the log messages the replicas produced, those projected as they were acknowledged (not read back). */
  onAppend?: { projected: number; produced: number };
}

/** The broker JVM's pid (scripts/kafka.sh keeps it in its state dir); undefined when it is not ours. */
let brokerPid: number | undefined;

/** CPU time (user+sys) of a server or the broker so far, in ms. */
function cpuOf(p: Proc | number): number {
  return processCpuMs(typeof p === 'number' ? p : p.child.pid);
}

/** Waits until the servers are idle (delivery and export done): under 5% of a core for 1 s. */
async function settle(servers: Proc[]): Promise<void> {
  let last = servers.reduce((n, s) => n + cpuOf(s), 0);
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = servers.reduce((n, s) => n + cpuOf(s), 0);
    if (now - last <= 50 * servers.length) return;
    last = now;
  }
}

/** A counter's total over its series in a replica's /metrics. */
async function counter(p: Proc, name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`http://${p.http}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*${labels}[^}]*\\})? (\\d+)`, 'gm'))) n += Number(m[1]);
  return n;
}

async function run(servers: Proc[], token: string, kafka: boolean): Promise<Result> {
  const per = Math.floor(EVENTS / servers.length);
  const before = await Promise.all(servers.map((s) => projected(s, kafka)));
  const cpu0 = servers.reduce((n, s) => n + cpuOf(s), 0);
  const broker0 = brokerPid ? cpuOf(brokerPid) : 0;
  const t0 = performance.now();
  await Promise.all(servers.map((s, i) => send(s, token, per, i * per)));
  const accepted = performance.now() - t0;
  const want = per * servers.length;
  // Every replica stores every event (with Kafka); without it, the one server stores what it got.
  for (;;) {
    const now = await Promise.all(servers.map((s) => projected(s, kafka)));
    if (now.every((n, i) => n - before[i]! >= (kafka ? want : per))) break;
    if (performance.now() - t0 > 600_000) throw new Error(`replicas stored ${now.map((n, i) => n - before[i]!).join(', ')} of ${want} events after 10 min`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const stored = performance.now() - t0;
  await settle(servers);
  const cpuMs = servers.reduce((n, s) => n + cpuOf(s), 0) - cpu0;
  const brokerMs = brokerPid ? cpuOf(brokerPid) - broker0 : 0;
  if (!kafka) return { accepted, stored, cpuMs, brokerMs };
  const sum = async (name: string, labels?: string) => (await Promise.all(servers.map((s) => counter(s, name, labels)))).reduce((a, b) => a + b, 0);
  const onAppend = {
    projected: await sum('verdict_kafka_projected_on_append_messages_total'),
    produced: await sum('verdict_kafka_produced_messages_total', 'topic="[^"]*\\.log"'),
  };
  return { accepted, stored, cpuMs, brokerMs, onAppend };
}

function rate(n: number, ms: number): string {
  return `${Math.round((n / ms) * 1000).toLocaleString('en-US')}/s`;
}

/** The 2-replica row: two servers on one log, one stream each. */
async function twoReplicas(dir: string, prefix: string, kafkaBlock: (p: string) => string, procs: Proc[]): Promise<Result> {
  const a = await startServer(dir, 'a', kafkaBlock(`${prefix}2`));
  const b = await startServer(dir, 'b', kafkaBlock(`${prefix}2`));
  procs.push(a, b);
  const token = register(a);
  // The token reaches B through the tokens topic.
  const pub = new TestPublisher(b.grpc, token);
  for (let i = 0; ; i++) {
    try {
      await pub.send([{ id: uuid7(), payload: payload(0, new Date().toISOString()) }], 2_000);
      break;
    } catch (e) {
      if (i > 100) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  pub.close();
  await new Promise((r) => setTimeout(r, 1000));
  return run([a, b], token, true);
}

export default async function (): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-bench-'));
  const broker = startBroker(join(dir, 'broker'));
  try {
    brokerPid = broker.owned ? Number(readFileSync(join(broker.stateDir, 'pid'), 'utf8').trim()) || undefined : undefined;
  } catch {
    brokerPid = undefined;
  }
  const procs: Proc[] = [];
  try {
    const prefix = `bench${randomUUID().slice(0, 6)}`;
    // VERDICT_BENCH_KAFKA_EXPORT=0 turns the export topic off, to tell its cost (one message per changed alert) from the log's.
    const exportTopic = (p: string) => (process.env.VERDICT_BENCH_KAFKA_EXPORT === '0' ? '""' : `${p}.alerts`);
    const kafkaBlock = (p: string) => `kafka:\n  brokers: [${broker.bootstrap}]\n  topic_prefix: ${p}\n  export_topic: ${exportTopic(p)}\n`;
    console.log(
      `${EVENTS.toLocaleString('en-US')} events per run, ${FINGERPRINTS.toLocaleString('en-US')} fingerprints, batches of ${BATCH}, ${IN_FLIGHT} in flight per stream; broker ${broker.bootstrap}`,
    );

    const base = await startServer(dir, 'sqlite', undefined);
    procs.push(base);
    const baseRes = await run([base], register(base), false);
    await stop(base);

    const one = await startServer(dir, 'one', kafkaBlock(`${prefix}1`));
    procs.push(one);
    const oneRes = await run([one], register(one), true);
    await stop(one);
    // VERDICT_BENCH_KAFKA_REPLICAS=1 leaves the 2-replica row out (before/after comparisons of the 1-replica path).
    const twoRes = process.env.VERDICT_BENCH_KAFKA_REPLICAS === '1' ? undefined : await twoReplicas(dir, prefix, kafkaBlock, procs);

    const perEvent = (r: Result) => (r.cpuMs * 1000) / EVENTS;
    const line = (name: string, r: Result, note: string) =>
      console.log(
        `  ${name.padEnd(30)} accepted ${rate(EVENTS, r.accepted).padStart(9)}   stored on every replica ${rate(EVENTS, r.stored).padStart(9)}   server cpu/event ${perEvent(r).toFixed(1).padStart(6)} µs (x${(perEvent(r) / perEvent(baseRes)).toFixed(2)})   broker ${((r.brokerMs * 1000) / EVENTS).toFixed(1).padStart(6)} µs  ${note}`,
      );
    console.log('alerts/s, from the first batch sent; server CPU (user+sys, all replicas) per event sent:');
    line('baseline: SQLite, no Kafka', baseRes, '(acknowledged = stored)');
    const own = (r: Result) => (r.onAppend ? `(own log messages projected on acknowledgement: ${r.onAppend.projected} of ${r.onAppend.produced})` : '');
    line('Kafka, 1 replica', oneRes, own(oneRes));
    if (twoRes) line('Kafka, 2 replicas, 1 broker', twoRes, `(each replica stores all events) ${own(twoRes)}`);
    console.log(
      `kafka vs single server: cpu per event x${(perEvent(oneRes) / perEvent(baseRes)).toFixed(2)}, accepted x${(baseRes.accepted / oneRes.accepted).toFixed(2)}`,
    );
  } finally {
    await Promise.all(procs.map(stop));
    stopBroker(broker);
    rmSync(dir, { recursive: true, force: true });
  }
}
