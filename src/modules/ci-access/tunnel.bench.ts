import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { processCpuMs } from '../../bench/proc.js';
import { startBenchKube } from '../../bench/kube.js';

// The CI tunnel against the API server directly, in one run, on one real
// kube-apiserver (scripts/kube.sh): `verdict server` and `verdict agent` as
// processes (the proxy on HTTPS, the agent on grpcs://, access_as agent so
// the API server does the same authorisation work on both paths).
// 1. latency of one GET of a ConfigMap: a keep-alive HTTPS client (kubectl's
//    own start-up, ~100 ms, would hide the tunnel), and `kubectl get` wall time;
// 2. a list of 5,000 ConfigMaps in one response, asked for as kubectl asks
//    (gzip, which the API server then compresses) and uncompressed, and
//    `kubectl get` of them (kubectl pages by 500).
// Targets: p50 overhead under 2 ms; list throughput at least 80% of direct.
//
// The machine is shared and its load swings within a run, so the paths take
// turns request by request (the order rotating, so none always runs right
// after another), and results are medians: the overhead is the median over
// blocks of each block's p50 difference, so a burst of load in one block
// moves one sample, not the result.
//
// VERDICT_BENCH_COMPARE=<other checkout>/dist/cli.js adds a second server and
// agent pair run from that build (e.g. the commit before a change) as a third
// path, so before and after are measured in the same run on the same load.

const CLI = fileURLToPath(new URL('../../cli.js', import.meta.url));
const CONFIGMAPS = 5000;
const GET_ROUNDS = Number(process.env.VERDICT_BENCH_GET_ROUNDS ?? 1500);
const GET_BLOCK = 250;
const LIST_ROUNDS = Number(process.env.VERDICT_BENCH_LIST_ROUNDS ?? 20);

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

const runCli = (cli: string) => [
  '--input-type=module',
  '-e',
  `const {main}=await import(${JSON.stringify(cli)});process.exitCode=await main(process.argv.slice(1))`,
];

function verdict(cli: string, args: string[]): string {
  return execFileSync(process.execPath, [...runCli(cli), ...args], { encoding: 'utf8' });
}

function spawnVerdict(cli: string, args: string[], name: string): { proc: ChildProcess; out: () => string } {
  // VERDICT_BENCH_PROF=<dir>: CPU profiles of server and agent, to see where the tunnel's time goes.
  const dir = process.env.VERDICT_BENCH_PROF;
  const prof = dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`] : [];
  // VERDICT_BENCH_NODE_FLAGS: more flags for both (--trace-gc, --max-semi-space-size=64), VERDICT_BENCH_COMPARE_NODE_FLAGS
  // instead for the compared pair (one build with and without a flag, same run); VERDICT_BENCH_LOGS=<dir>: their output, kept.
  const compared = name.startsWith('compared-') && process.env.VERDICT_BENCH_COMPARE_NODE_FLAGS !== undefined;
  const flags = (compared ? process.env.VERDICT_BENCH_COMPARE_NODE_FLAGS : process.env.VERDICT_BENCH_NODE_FLAGS)?.split(/\s+/).filter((x) => x) ?? [];
  const proc = spawn(process.execPath, [...prof, ...flags, ...runCli(cli), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const logs = process.env.VERDICT_BENCH_LOGS;
  if (logs) proc.once('exit', () => writeFileSync(join(logs, `${name}-${proc.pid}.log`), out));
  return { proc, out: () => out };
}

async function waitFor(what: string, pred: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Target {
  name: string;
  base: string;
  token: string;
  agent: Agent;
  kubeconfig: string;
  /** The processes on this path besides the API server (server and agent of a tunnel). */
  procs: { name: string; pid: number | undefined }[];
}

/**
 * One GET; resolves with the body's size once it is read completely. With gzip, it asks for a compressed
 * answer and inflates it, as kubectl (client-go, Go's HTTP transport) does on every request: the API server
 * compresses responses of 128 KiB and more, so that is how a large list crosses the tunnel in real use.
 */
function get(t: Target, path: string, o: { gzip?: boolean } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers = { authorization: `Bearer ${t.token}`, accept: 'application/json', ...(o.gzip ? { 'accept-encoding': 'gzip' } : {}) };
    const req = request(`${t.base}${path}`, { agent: t.agent, headers }, (res) => {
      let n = 0;
      const body = res.headers['content-encoding'] === 'gzip' ? res.pipe(createGunzip()) : res;
      body.on('data', (d: Buffer) => (n += d.length));
      body.on('error', reject);
      body.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', (e) => reject(new Error(`${t.base}${path}: ${e.message}`)));
    req.end();
  });
}

const median = (xs: number[]) => pct(xs, 50);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Runs fn for every target `rounds` times, the order rotating each round; returns the times per target and the CPU each target's processes used. */
async function interleaved(targets: Target[], rounds: number, fn: (t: Target) => Promise<unknown>): Promise<{ times: number[][]; cpu: Map<string, number> }> {
  const times = targets.map(() => [] as number[]);
  const cpu0 = new Map(targets.flatMap((t) => t.procs.map((p) => [`${t.name}/${p.name}`, processCpuMs(p.pid)] as const)));
  const client = targets.map(() => 0);
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < targets.length; k++) {
      const i = (r + k) % targets.length;
      const c = process.cpuUsage();
      times[i]!.push(await timeIt(() => fn(targets[i]!)));
      const d = process.cpuUsage(c);
      client[i]! += (d.user + d.system) / 1000;
    }
  }
  const cpu = new Map<string, number>();
  for (const t of targets) for (const p of t.procs) cpu.set(`${t.name}/${p.name}`, processCpuMs(p.pid) - cpu0.get(`${t.name}/${p.name}`)!);
  for (const [i, t] of targets.entries()) cpu.set(`${t.name}/client`, client[i]!);
  return { times, cpu };
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

export default async function bench(): Promise<void> {
  const kube = startBenchKube('verdict-bench-ci-');
  if (!kube) return;
  const state = kube.stateDir;
  const procs: ChildProcess[] = [];
  try {
    await kube.kubectl(['create', 'namespace', 'bench']);
    const items = Array.from({ length: CONFIGMAPS }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `cm-${i}`, namespace: 'bench', labels: { app: 'bench' } },
      data: { index: String(i), payload: 'x'.repeat(200) },
    }));
    writeFileSync(join(state, 'cms.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    await kube.kubectl(['create', '-f', join(state, 'cms.json')]);

    // Certificates: kubectl sends bearer tokens only over TLS.
    // Beside, not inside, the control plane's own files (it has a ca.crt too).
    mkdirSync(join(state, 'verdict'));
    const f = (n: string) => join(state, 'verdict', n);
    const ssl = (...a: string[]) => execFileSync('openssl', a, { stdio: 'pipe' });
    ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '1', '-subj', '/CN=bench CA');
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('tls.key'), '-out', f('tls.csr'), '-subj', '/CN=localhost');
    writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ssl(
      'x509',
      '-req',
      '-in',
      f('tls.csr'),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f('tls.crt'),
      '-days',
      '1',
      '-extfile',
      f('ext.cnf'),
    );

    const project = f('infra');
    mkdirSync(join(project, '.gitlab/agents/bench'), { recursive: true });
    writeFileSync(join(project, '.gitlab/agents/bench/config.yaml'), 'ci_access:\n  projects:\n    - id: bench/app\n      default_namespace: bench\n');
    const git = (...a: string[]) => execFileSync('git', ['-C', project, '-c', 'user.name=b', '-c', 'user.email=b@b', ...a]);
    git('init', '-q', '-b', 'main');
    git('add', '-A');
    git('commit', '-q', '-m', 'bench');

    const keepAlive = (ca: string) => new Agent({ keepAlive: true, ca: readFileSync(ca) });

    /** A server and an agent run from `cli`, each with its own data directory and ports. */
    const startTunnel = async (name: string, cli: string): Promise<Target> => {
      const [grpcPort, proxyPort] = [await freePort(), await freePort()];
      const dir = f(name);
      mkdirSync(dir);
      const data = join(dir, 'verdict-data');
      const config = join(dir, 'server.yaml');
      writeFileSync(
        config,
        `data_dir: ${data}\nhttp_addr: 127.0.0.1:0\ngrpc_addr: 127.0.0.1:${grpcPort}\ntls: {cert_file: ${f('tls.crt')}, key_file: ${f('tls.key')}}\nkubernetes_api: {listen: "127.0.0.1:${proxyPort}"}\n`,
      );
      writeFileSync(join(dir, 'agent-token'), verdict(cli, ['agents', 'register', 'bench', '--config-project', project, '--data-dir', data]).trim());
      const server = spawnVerdict(cli, ['server', '--config', config], `${name}-server`);
      procs.push(server.proc);
      await waitFor(`the server (${name})`, () => server.out().includes('CI tunnel: Kubernetes API proxy listening'));
      const agent = spawnVerdict(
        cli,
        [
          'agent',
          `--kas-address=grpcs://127.0.0.1:${grpcPort}`,
          `--ca-cert-file=${f('ca.crt')}`,
          `--token-file=${join(dir, 'agent-token')}`,
          `--data-dir=${join(dir, 'agent')}`,
          '--observability-addr=',
          `--kubeconfig=${kube.kubeconfig}`,
        ],
        `${name}-agent`,
      );
      procs.push(agent.proc);
      await waitFor(`the agent (${name})`, () => agent.out().includes('CI tunnel: ready'));
      const jobToken = verdict(cli, ['ci-tokens', 'create', '--project', 'bench/app', '--ttl', '1h', '--data-dir', data]).trim();
      const kubeconfig = join(dir, 'ci-kubeconfig');
      writeFileSync(kubeconfig, verdict(cli, ['kubeconfig', '--ci-token', jobToken, '--config', config, '--certificate-authority', f('ca.crt')]));
      const agentId = /user: agent:(\d+)/.exec(readFileSync(kubeconfig, 'utf8'))![1];
      return {
        name,
        base: `https://127.0.0.1:${proxyPort}`,
        token: `ci:${agentId}:${jobToken}`,
        agent: keepAlive(f('ca.crt')),
        kubeconfig,
        procs: [
          { name: 'server', pid: server.proc.pid },
          { name: 'agent', pid: agent.proc.pid },
        ],
      };
    };

    const direct: Target = { name: 'direct', base: kube.server, token: kube.token, agent: keepAlive(kube.caFile), kubeconfig: kube.kubeconfig, procs: [] };
    const targets = [direct, await startTunnel('tunnel', CLI)];
    const compare = process.env.VERDICT_BENCH_COMPARE;
    if (compare) targets.push(await startTunnel('compared', compare));
    // The API server's CPU per request is the baseline the tunnel's processes compare against: what serving it costs.
    const apiserver = [{ name: 'kube-apiserver', pid: kube.pids.apiserver }];
    for (const t of targets) t.procs.push(...apiserver);
    const one = '/api/v1/namespaces/bench/configmaps/cm-1';
    const all = '/api/v1/namespaces/bench/configmaps';
    const ms = (x: number) => `${x.toFixed(2)} ms`;
    const cpuLine = (cpu: Map<string, number>, n: number, per: string) => {
      const api = targets.map((t) => cpu.get(`${t.name}/kube-apiserver`)!);
      // The API server's CPU over the phase is shared by all paths; per request it is the phase's total over all their requests.
      const apiPer = api[0]! / (n * targets.length);
      const parts = targets
        .filter((t) => t.procs.length > 1)
        .map((t) =>
          t.procs
            .filter((p) => p.name !== 'kube-apiserver')
            .map((p) => `${t.name} ${p.name} ${ms(cpu.get(`${t.name}/${p.name}`)! / n)}`)
            .join(', '),
        );
      // The client is this process, a Node HTTPS client reading the same answer: what one hop of the tunnel costs at least.
      const client = targets.map((t) => `${t.name} ${ms(cpu.get(`${t.name}/client`)! / n)}`).join(', ');
      return `CPU per ${per}: ${parts.join('; ')}; baselines: kube-apiserver ${ms(apiPer)} (all paths), the client (this process) ${client}`;
    };

    // 1. One GET.
    for (let i = 0; i < 100; i++) for (const t of targets) await get(t, one);
    const gets = await interleaved(targets, GET_ROUNDS, (t) => get(t, one));
    console.log(`GET one ConfigMap (keep-alive HTTPS client, ${GET_ROUNDS} each, interleaved; load average ${loadavg()})`);
    console.log('| path | p50 | p90 | p99 | p50 overhead (median of blocks of 250) |\n|---|---|---|---|---|');
    const blocks = (xs: number[]) => Array.from({ length: Math.floor(xs.length / GET_BLOCK) }, (_, b) => median(xs.slice(b * GET_BLOCK, (b + 1) * GET_BLOCK)));
    const directBlocks = blocks(gets.times[0]!);
    const overheads = targets.map((_, i) => median(blocks(gets.times[i]!).map((x, b) => x - directBlocks[b]!)));
    targets.forEach((t, i) => {
      const xs = gets.times[i]!;
      console.log(`| ${t.name} | ${ms(pct(xs, 50))} | ${ms(pct(xs, 90))} | ${ms(pct(xs, 99))} | ${i === 0 ? '' : ms(overheads[i]!)} |`);
    });
    console.log(`p50 overhead of the tunnel: ${ms(overheads[1]!)} (target < 2 ms: ${overheads[1]! < 2 ? 'met' : 'NOT met'})`);
    console.log(cpuLine(gets.cpu, GET_ROUNDS, 'GET'));

    const kget = await interleaved(targets, 10, (t) =>
      kube.kubectl(t === direct ? ['get', 'configmap', 'cm-1', '-n', 'bench', '-o', 'name'] : ['get', 'configmap', 'cm-1', '-o', 'name'], {
        kubeconfig: t.kubeconfig,
      }),
    );
    console.log(
      `kubectl get configmap (process wall time, 10 each, p50): ${targets.map((t, i) => `${t.name} ${ms(median(kget.times[i]!))}`).join(', ')} (a 100 ms process start on a loaded machine: noise of ±20 ms)`,
    );

    // 2. Lists: as kubectl asks for them (gzip), and uncompressed (a client that does not ask), the tunnel's worst case.
    const bytes = await get(direct, all);
    for (const gzip of [true, false]) {
      for (const t of targets) await get(t, all, { gzip });
      const lists = await interleaved(targets, LIST_ROUNDS, (t) => get(t, all, { gzip }));
      const how = gzip
        ? 'asked for as kubectl asks (Accept-Encoding: gzip; the API server compresses it)'
        : 'uncompressed (a client that does not ask for gzip)';
      console.log(
        `\nList of ${CONFIGMAPS} ConfigMaps in one response, ${how} (${(bytes / (1 << 20)).toFixed(1)} MiB of JSON, ${LIST_ROUNDS} each, interleaved; load average ${loadavg()})`,
      );
      console.log('| path | p50 | MiB/s of JSON | throughput vs direct (ratio of medians) | median of per-round ratios |\n|---|---|---|---|---|');
      const d = lists.times[0]!;
      const ratios = targets.map((_, i) => median(d) / median(lists.times[i]!));
      targets.forEach((t, i) => {
        const xs = lists.times[i]!;
        const perRound = median(xs.map((x, r) => d[r]! / x));
        console.log(
          `| ${t.name} | ${ms(median(xs))} | ${(bytes / (median(xs) / 1000) / (1 << 20)).toFixed(0)} | ${(ratios[i]! * 100).toFixed(0)}% | ${(perRound * 100).toFixed(0)}% |`,
        );
      });
      console.log(
        gzip
          ? `tunnel throughput ${(ratios[1]! * 100).toFixed(0)}% of direct for a list as kubectl asks for it (target >= 80%: ${ratios[1]! >= 0.8 ? 'met' : 'NOT met'})`
          : `tunnel throughput ${(ratios[1]! * 100).toFixed(0)}% of direct for an uncompressed list`,
      );
      console.log(cpuLine(lists.cpu, LIST_ROUNDS, 'list'));
    }

    const klist = await interleaved(targets, 3, (t) =>
      kube.kubectl(t === direct ? ['get', 'configmaps', '-n', 'bench', '-o', 'name'] : ['get', 'configmaps', '-o', 'name'], { kubeconfig: t.kubeconfig }),
    );
    console.log(
      `kubectl get configmaps (pages of 500, 3 each, p50): ${targets.map((t, i) => `${t.name} ${ms(median(klist.times[i]!))} (${((median(klist.times[0]!) / median(klist.times[i]!)) * 100).toFixed(0)}%)`).join(', ')}`,
    );
    for (const t of targets) t.agent.destroy();
  } finally {
    // SIGTERM: a profiled process writes its profile on a clean exit, which takes a loaded machine a while.
    const gone = (p: ChildProcess) => p.exitCode !== null || p.signalCode !== null;
    const exited = procs.map((p) => new Promise((r) => (gone(p) ? r(undefined) : p.once('exit', r))));
    for (const p of procs) p.kill('SIGTERM');
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 20_000))]);
    for (const p of procs) if (!gone(p)) p.kill('SIGKILL');
    kube.stop();
  }
}
