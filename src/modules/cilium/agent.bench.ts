import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Flow } from '../../gen/flow/flow.js';
import { HubbleRelayPeer } from '../../peers/hubble-relay/relay-peer.js';
import { AgentRegistry } from '../../server/agents/agent-registry.js';
import { openServerDb } from '../../server/store/server-db.js';
import { PolicyEngine } from './policy/engine.js';
import { makeFlows, makePolicies, makePolicyDocs, rand } from './policy/bench-data.js';
import { measure } from './policy/match.bench.js';
import { peakRssMb, processCpuMs } from '../../bench/proc.js';

// Agent CPU per dropped flow on the whole flow path, beside decode + match of
// the same flows measured in the same run (match.bench.ts's measure()).
//
// Four processes: this one orchestrates and measures decode + match; a Hubble
// Relay peer (the relay-peer module, in a child process of this file) streams
// N dropped flows; a real agent (`verdict agent`, with the policies as
// --policies files and its cilium block from a configuration project)
// follows them, matches, folds and spools alerts; a real `verdict server`
// serves its tunnel. The agent's CPU (user + system from /proc, GC included)
// is read from when the first flow is pushed until the agent has received
// every flow and gone quiet, less what it uses idle in the same time.
//
// Each agent gets the N flows twice. Cold: the first pass, as the agent
// starts (its code not yet compiled by the JIT, its heap still growing).
// Warm: the same flows again with their times 1000 s later, once every alert
// group of the first pass has closed (the dedup window) and gone to the spool
// and the server, so the agent starts the second pass from the state it
// started the first one (no open group, the cursor before every flow) and
// does the same work: the same groups opened, the same repeats folded, the
// same commits. What stays from the first pass is what any running agent
// has: compiled code, a grown heap, and its small caches (the fingerprints and
// node names seen). Warm is the figure held against the target: decode + match is
// measured warm too (measure() after a warm-up, the best of three rounds), so
// a cold agent would be charged for its JIT warm-up and the floor not, and an
// agent runs for days, warm but for its first seconds. Cold is reported
// beside it.
//
// VERDICT_BENCH_BEFORE=<dir of another build> adds a row for that build's
// agent (its bin/verdict.js), measured in the same run against the same
// server, relay and flows: how the numbers before a change are taken.
// VERDICT_BENCH_ROUNDS=<r> runs each build r times, taking turns, and adds
// each build's medians. VERDICT_BENCH_FLOWS sets N (default 100,000).

const N = Number(process.env.VERDICT_BENCH_FLOWS ?? 100_000);
const ROUNDS = Number(process.env.VERDICT_BENCH_ROUNDS ?? 1);
const POLICIES = 100;
const SHAPES = 200;
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);
const AGENT = 'bench';
const ROLE_ENV = 'VERDICT_CILIUM_BENCH_ROLE';
/** How often the agent's flow counter is read while it works (and while it idles, to subtract what answering costs). */
const POLL_MS = 200;
/** The agent's dedup window (its default; the bench's config leaves it). */
const DEDUP_WINDOW_MS = 10_000;
/** How much later the warm pass's flows are than the cold pass's: past the cursor, and as new to it. */
const WARM_SHIFT_S = 1000;

const cpuSeconds = (pid: number) => processCpuMs(pid) / 1000;
const rssMb = peakRssMb;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Spawns a process and resolves with it once `ready` matches its stdout. */
function spawnUntil(args: string[], ready: RegExp, env?: NodeJS.ProcessEnv): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'advanced', env: env ?? process.env });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const t = setTimeout(() => reject(new Error(`${args.join(' ')} did not start: ${out}${err}`)), 30_000);
    proc.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ proc, match: m });
      }
    });
    proc.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code}): ${out}${err}`)));
  });
}

/**
 * The dropped flows as Relay sends them: SHAPES kinds of drop (match.bench.ts's
 * traffic) coming again and again from varied source ports, as retransmits and
 * retries do, each with its own time (1 µs apart) and uuid, as Hubble gives
 * every flow.
 */
function relayFlows(): Uint8Array[] {
  const base = Math.floor(Date.now() / 1000);
  const shapes = makeFlows(SHAPES, rand(7));
  return Array.from({ length: N }, (_, i) => {
    const f = Flow.decode(shapes[i % SHAPES]!);
    const l4 = f.l4?.protocol;
    if (l4?.$case === 'TCP' || l4?.$case === 'UDP') l4.value.source_port = 32768 + ((i * 7919) % 28000);
    f.time = { seconds: base + Math.floor(i / 1e6), nanos: (i % 1e6) * 1000 };
    f.uuid = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
    f.node_name = `node-${i % 5}`;
    f.event_type = { type: 1, sub_type: 133 };
    return Flow.encode(f).finish();
  });
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

interface Row {
  /** Warm: the second pass of the flows, after the first one's groups are closed and sent. */
  cpuUs: number;
  /** Cold: the first pass, as the agent starts. */
  coldCpuUs: number;
  /** Decode + match measured just before this agent's run: the machine is shared, and its load changes from run to run. */
  floorUs: number;
  ratio: number;
  coldRatio: number;
  idleUsPerS: number;
  seconds: number;
  occurrences: number;
  coldOccurrences: number;
  rssMb: number;
}

async function runAgent(
  bin: string,
  dir: string,
  policyDir: string,
  serverGrpc: string,
  serverData: string,
  relay: ChildProcess,
  relayAddr: string,
  floorUs: number,
): Promise<Row> {
  const base = mkdtempSync(join(dir, 'run-'));
  const project = join(base, 'project');
  const name = `${AGENT}-${base
    .slice(-6)
    .toLowerCase()
    .replace(/[^a-z0-9]/g, 'x')}`;
  mkdirSync(join(project, '.gitlab/agents', name), { recursive: true });
  writeFileSync(
    join(project, '.gitlab/agents', name, 'config.yaml'),
    `cilium:\n  hubble_relay_address: ${relayAddr}\n  cluster_name: bench\n  kubernetes_policies: 'off'\nobservability:\n  logging:\n    level: warn\n`,
  );
  const git = (...a: string[]) =>
    execFileSync('git', ['-C', project, '-c', 'user.name=bench', '-c', 'user.email=bench@verdict.invalid', '-c', 'commit.gpgsign=false', ...a]);
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'bench');
  const sdb = openServerDb(serverData);
  const { token } = new AgentRegistry(sdb).register(name, project);
  sdb.close();
  writeFileSync(join(base, 'token'), token);
  const obs = await freePort();
  const agent = spawn(
    process.execPath,
    [
      ...(process.env.VERDICT_BENCH_AGENT_NODE_OPTIONS?.split(' ').filter(Boolean) ?? []),
      bin,
      'agent',
      '--kas-address',
      `grpc://${serverGrpc}`,
      '--token-file',
      join(base, 'token'),
      '--data-dir',
      join(base, 'agent'),
      '--policies',
      policyDir,
      '--observability-addr',
      `127.0.0.1:${obs}`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let err = '';
  agent.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  try {
    // Following the relay (the peer counts GetFlows calls) and idle.
    const calls0 = await ask<number>(relay, 'requests');
    for (let i = 0; (await ask<number>(relay, 'requests')) === calls0; i++) {
      if (i > 300 || agent.exitCode !== null) throw new Error(`the agent did not follow the relay: ${err}`);
      await sleep(100);
    }
    await sleep(1000);
    // Quiet: under 50 ms of CPU in 1.1 s, longer than the agent waits to commit a batch (500 ms) and
    // to save its cursor (1 s), so the last commit is counted (the metric poll goes on meanwhile, as
    // it does while idle is measured, and the idle use is taken off).
    const quiet = async () => {
      for (let last = cpuSeconds(agent.pid!); ; ) {
        await metric(obs, 'verdict_agent_hubble_flows_total');
        await sleep(1100);
        const now = cpuSeconds(agent.pid!);
        if (now - last < 0.05) break;
        last = now;
      }
    };
    /** The N flows once, with their times `shiftS` seconds later: the agent's CPU for them, less its idle. */
    const phase = async (shiftS: number) => {
      // Idle as measured below: answering the metric polls (5 a second) is part of it, not of the flows' cost.
      const i0 = cpuSeconds(agent.pid!);
      const idleT0 = performance.now();
      for (let i = 0; i < 10; i++) {
        await metric(obs, 'verdict_agent_hubble_flows_total');
        await sleep(POLL_MS);
      }
      const idlePerS = (cpuSeconds(agent.pid!) - i0) / ((performance.now() - idleT0) / 1000);
      const received0 = await metric(obs, 'verdict_agent_hubble_flows_total');
      const occurrences0 = await metric(obs, 'verdict_agent_alert_occurrences_total{source="cilium"}');
      const c0 = cpuSeconds(agent.pid!);
      const t0 = performance.now();
      await ask(relay, 'push', { shiftS });
      while ((await metric(obs, 'verdict_agent_hubble_flows_total')) < received0 + N) {
        if (agent.exitCode !== null) throw new Error(`the agent exited: ${err}`);
        await sleep(POLL_MS);
      }
      // Received; the last batch's work follows within a turn.
      await quiet();
      const seconds = (performance.now() - t0) / 1000;
      const cpu = cpuSeconds(agent.pid!) - c0 - idlePerS * seconds;
      const occurrences = (await metric(obs, 'verdict_agent_alert_occurrences_total{source="cilium"}')) - occurrences0;
      return { cpuUs: (cpu * 1e6) / N, idlePerS, seconds, occurrences };
    };
    const cold = await phase(0);
    // Between the phases every alert group of the cold one closes (dedup window 10 s), goes to
    // the spool and is sent: the warm phase starts from the same state, with the same work to do.
    await sleep(DEDUP_WINDOW_MS + 1000);
    for (let i = 0; (await metric(obs, 'verdict_agent_spool_alerts')) > 0 && i < 100; i++) await sleep(POLL_MS);
    await quiet();
    const warm = await phase(WARM_SHIFT_S);
    return {
      cpuUs: warm.cpuUs,
      coldCpuUs: cold.cpuUs,
      floorUs,
      ratio: warm.cpuUs / floorUs,
      coldRatio: cold.cpuUs / floorUs,
      idleUsPerS: warm.idlePerS * 1e6,
      seconds: warm.seconds,
      occurrences: warm.occurrences,
      coldOccurrences: cold.occurrences,
      rssMb: rssMb(agent.pid!),
    };
  } finally {
    // A profiled agent (--cpu-prof) writes its profile only when it exits on its own.
    const exited = new Promise((r) => (agent.exitCode !== null ? r(null) : agent.once('exit', r)));
    agent.kill(process.env.VERDICT_BENCH_AGENT_NODE_OPTIONS ? 'SIGTERM' : 'SIGKILL');
    await Promise.race([exited, sleep(15_000)]);
  }
}

/** Each column's median on its own. */
function median(rows: readonly Row[]): Row {
  const m = (f: (r: Row) => number) => {
    const v = rows.map(f).sort((a, b) => a - b);
    return v.length % 2 ? v[v.length >> 1]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  return {
    cpuUs: m((r) => r.cpuUs),
    coldCpuUs: m((r) => r.coldCpuUs),
    floorUs: m((r) => r.floorUs),
    ratio: m((r) => r.ratio),
    coldRatio: m((r) => r.coldRatio),
    idleUsPerS: m((r) => r.idleUsPerS),
    seconds: m((r) => r.seconds),
    occurrences: m((r) => r.occurrences),
    coldOccurrences: m((r) => r.coldOccurrences),
    rssMb: m((r) => r.rssMb),
  };
}

let asked = 0;
/** One request to the relay child over IPC. */
function ask<T>(child: ChildProcess, op: string, extra: object = {}): Promise<T> {
  const id = ++asked;
  return new Promise((resolve, reject) => {
    const on = (m: { id: number; value?: T; error?: string }) => {
      if (m.id !== id) return;
      child.off('message', on);
      if (m.error) reject(new Error(m.error));
      else resolve(m.value as T);
    };
    child.on('message', on);
    child.send({ id, op, ...extra });
  });
}

export default async function (): Promise<void> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'verdict-cilium-bench-')));
  const policyDir = join(dir, 'policies');
  mkdirSync(policyDir);
  writeFileSync(join(policyDir, 'bench.yaml'), makePolicyDocs(POLICIES, rand(POLICIES)).join('---\n'));
  const flows = relayFlows();
  const before = process.env.VERDICT_BENCH_BEFORE;
  console.log(
    `Cilium flow path: ${N.toLocaleString('en-US')} dropped flows (${SHAPES.toLocaleString('en-US')} kinds, varied source ports) from a Relay peer process to a real agent (${POLICIES} labelled policies, dedup window 10 s) with a real server; node ${process.version}, ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(1)} at start`,
  );

  // Decode + match of the same flows, in this process: the floor the agent's path is held against.
  const engine = new PolicyEngine(makePolicies(POLICIES, rand(POLICIES)));
  measure(engine, flows, 300);
  const floor = () => {
    let best = 0;
    for (let i = 0; i < 3; i++) best = Math.max(best, measure(engine, flows, 500).cpu);
    return 1e6 / best;
  };

  const server = await spawnUntil(
    [join(ROOT, 'bin/verdict.js'), 'server', '--data-dir', join(dir, 'server'), '--http-addr', '127.0.0.1:0', '--grpc-addr', '127.0.0.1:0'],
    /"grpc_addr":"([^"]+)"/,
  );
  const relay = await spawnUntil([SELF], /relay (\S+)/, { ...process.env, [ROLE_ENV]: 'relay' });
  try {
    relay.proc.send({ id: 0, op: 'flows', flows });
    const rows: [string, Row][] = [];
    const builds: [string, string][] = [['this build', join(ROOT, 'bin/verdict.js')]];
    if (before) builds.unshift([`before (${before})`, join(before, 'bin/verdict.js')]);
    // Builds take turns, round after round, so a change in the machine's load falls on both.
    for (let round = 0; round < ROUNDS; round++)
      for (const [name, bin] of builds)
        rows.push([name, await runAgent(bin, dir, policyDir, server.match[1]!, join(dir, 'server'), relay.proc, relay.match[1]!, floor())]);
    if (ROUNDS > 1) for (const [name] of builds) rows.push([`${name}, median of ${ROUNDS}`, median(rows.filter(([n]) => n === name).map(([, r]) => r))]);
    console.log('');
    console.log(
      '| agent | agent CPU µs/flow, warm | decode + match µs/flow (same run, just before) | ratio, warm | agent CPU µs/flow, cold | ratio, cold | flows per agent CPU-second, warm | alert occurrences, cold / warm | agent idle CPU µs/s | seconds, warm | agent peak RSS MB |',
    );
    console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [name, r] of rows) {
      console.log(
        `| ${name} | ${r.cpuUs.toFixed(1)} | ${r.floorUs.toFixed(1)} | ${r.ratio.toFixed(1)}x | ${r.coldCpuUs.toFixed(1)} | ${r.coldRatio.toFixed(1)}x | ${Math.round(1e6 / r.cpuUs).toLocaleString('en-US')} | ${r.coldOccurrences.toLocaleString('en-US')} / ${r.occurrences.toLocaleString('en-US')} | ${Math.round(r.idleUsPerS).toLocaleString('en-US')} | ${r.seconds.toFixed(1)} | ${r.rssMb.toFixed(0)} |`,
      );
    }
    console.log(
      `\ntarget: agent CPU per flow (warm) at most 3x decode + match, measured just before each agent's run; load average ${loadavg()[0]!.toFixed(1)} at the end`,
    );
  } finally {
    relay.proc.kill('SIGKILL');
    server.proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The relay child: a HubbleRelayPeer that pushes the flows it was given when asked. */
async function serveRelay(): Promise<void> {
  const peer = new HubbleRelayPeer({ bufferSize: 4095 });
  const addr = await peer.listen('127.0.0.1:0');
  let flows: Flow[] = [];
  let seconds: number[] = [];
  process.on('message', (m: { id: number; op: string; flows?: Uint8Array[]; shiftS?: number }) => {
    const reply = (value?: unknown) => process.send!({ id: m.id, value });
    switch (m.op) {
      case 'flows':
        flows = m.flows!.map((b) => Flow.decode(b));
        seconds = flows.map((f) => f.time?.seconds ?? 0);
        return;
      case 'requests':
        return reply(peer.requests.length);
      case 'push':
        // The same flows, their times moved by shiftS from the given ones (the relay's work, not the agent's).
        flows.forEach((f, i) => {
          if (f.time) f.time.seconds = seconds[i]! + (m.shiftS ?? 0);
        });
        for (let i = 0; i < flows.length; i += 1000) peer.push(flows.slice(i, i + 1000));
        return reply();
      default:
        process.send!({ id: m.id, error: `unknown op ${m.op}` });
    }
  });
  process.stdout.write(`relay ${addr}\n`);
}

if (process.env[ROLE_ENV] === 'relay' && process.argv[1] && realpathSync(process.argv[1]) === realpathSync(SELF)) await serveRelay();
