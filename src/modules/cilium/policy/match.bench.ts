import { cpus, loadavg } from 'node:os';
import { Flow } from '../../../gen/flow/flow.js';
import { PolicyEngine } from './engine.js';
import { LinearMatcher } from './linear.js';
import { makeFlows, makePolicies, rand } from './bench-data.js';

// Flows per second through Flow.decode + attribute() with 10, 100 and 1,000
// labelled policies, for the indexed engine and for the linear scan of every
// policy, in the same run. Flows are binary protobuf, as Hubble Relay sends
// them. The cluster, policies and flows: bench-data.ts (25 namespaces of 8
// services, every flow a drop).
// "engine" is the steady state, the 20,000 flows going round again (drops do
// repeat: retransmits, retries); "cold" is a new engine seeing each once.
// Rates are per second of this process's CPU time, the figure for one core on
// a machine others share, with wall-clock rates beside them.

export interface Runner {
  attribute(f: Flow): unknown;
}

export interface Rate {
  /** per second of wall-clock time */
  wall: number;
  /** per second of this process's CPU time: what one core does, whatever else the machine runs */
  cpu: number;
}

function cpuNow(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Flows per second over at least `minMs`. */
export function measure(m: Runner | null, flows: Uint8Array[], minMs: number): Rate {
  let n = 0;
  const t0 = process.hrtime.bigint();
  const c0 = cpuNow();
  let elapsed = 0;
  do {
    for (const b of flows) {
      const f = Flow.decode(b);
      if (m !== null) m.attribute(f);
    }
    n += flows.length;
    elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
  } while (elapsed < minMs);
  return { wall: (n / elapsed) * 1000, cpu: n / (cpuNow() - c0) };
}

// The machine is shared: the best of several rounds is the least disturbed one.
const ROUNDS = 5;
// `npm run bench` runs node with --expose-gc: each round starts without the previous one's garbage.
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

function best(m: Runner | null, flows: Uint8Array[], ms: number): Rate {
  const b: Rate = { wall: 0, cpu: 0 };
  for (let i = 0; i < ROUNDS; i++) {
    gc();
    const r = measure(m, flows, ms);
    b.wall = Math.max(b.wall, r.wall);
    b.cpu = Math.max(b.cpu, r.cpu);
  }
  return b;
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

export default async function (): Promise<void> {
  const r = rand(42);
  const flows = makeFlows(20_000, r);
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `node ${process.version}, ${cpus().length} CPUs (${cpu}); one thread; ${flows.length} distinct binary flows; load average ${loadavg()[0]!.toFixed(1)} at start`,
  );
  // Warm the decoder alone so the first row does not pay for JIT.
  measure(null, flows, 300);
  const decodeOnly = best(null, flows, 300);
  console.log(
    `decode only: ${fmt(decodeOnly.cpu)} flows per CPU-second, ${fmt(decodeOnly.wall)} per wall-clock second (best of ${ROUNDS} rounds, as every figure below)\n`,
  );
  // And the matchers, so the first row does not pay for compiling them.
  const warm = makePolicies(50, rand(1));
  measure(new PolicyEngine(warm), flows, 500);
  measure(new LinearMatcher(warm), flows.slice(0, 5000), 300);
  console.log('Flows per CPU-second (wall-clock in brackets):\n');
  console.log('| policies | build engine (ms) | engine | engine, cold caches | linear scan | speed-up | matching alone (ns/flow) | alerts agree |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|:---:|');
  for (const count of [10, 100, 1000]) {
    const ps = makePolicies(count, rand(count));
    const t0 = performance.now();
    const engine = new PolicyEngine(ps);
    const build = performance.now() - t0;
    const linear = new LinearMatcher(ps);
    // The same flows through both must give the same alerts.
    let agree = true;
    for (const b of flows.slice(0, 2000)) {
      const f = Flow.decode(b);
      if (JSON.stringify(engine.attribute(f)) !== JSON.stringify(linear.attribute(f))) agree = false;
    }
    // Cold: a new engine meets every (endpoints, port) pair for the first time.
    const cold: Rate = { wall: 0, cpu: 0 };
    for (let i = 0; i < ROUNDS; i++) {
      const fresh = new PolicyEngine(ps);
      gc();
      const t = process.hrtime.bigint();
      const c = cpuNow();
      for (const b of flows) fresh.attribute(Flow.decode(b));
      cold.wall = Math.max(cold.wall, flows.length / (Number(process.hrtime.bigint() - t) / 1e9));
      cold.cpu = Math.max(cold.cpu, flows.length / (cpuNow() - c));
    }
    measure(engine, flows, 200);
    const e = best(engine, flows, 400);
    const l = best(linear, count >= 1000 ? flows.slice(0, 2000) : flows, 400);
    const both = (x: Rate) => `${fmt(x.cpu)} (${fmt(x.wall)})`;
    console.log(
      `| ${count} | ${build.toFixed(1)} | ${both(e)} | ${both(cold)} | ${both(l)} | ${(e.cpu / l.cpu).toFixed(1)}x | ${Math.max(0, Math.round(1e9 / e.cpu - 1e9 / decodeOnly.cpu))} | ${agree ? 'yes' : 'NO'} |`,
    );
  }
  const big = makePolicies(5000, rand(5000));
  const t0 = performance.now();
  new PolicyEngine(big);
  console.log(`\nbuilding an engine of 5,000 policies: ${(performance.now() - t0).toFixed(1)} ms; load average ${loadavg()[0]!.toFixed(1)} at the end`);
}
