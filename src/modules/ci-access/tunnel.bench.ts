import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { processCpuMs } from '../../bench/proc.js';

// The CI tunnel against the API server directly, in one run, on one real
// kube-apiserver (scripts/kube.sh): `verdict server` and `verdict agent` as
// processes (the proxy on HTTPS, the agent on grpcs://, access_as agent so
// the API server does the same authorisation work on both paths).
// 1. latency of one GET of a ConfigMap: a keep-alive HTTPS client (kubectl's
//    own start-up, ~100 ms, would hide the tunnel), and `kubectl get` wall time;
// 2. a list of 5,000 ConfigMaps in one response, and `kubectl get` of them
//    (kubectl pages by 500).
// Targets (issue 16): p50 overhead under 2 ms; list throughput at least 80% of direct.

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../../scripts/kube.sh', import.meta.url));
const CLI = fileURLToPath(new URL('../../cli.js', import.meta.url));
const CONFIGMAPS = 5000;

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });

function verdict(args: string[]): string {
  return execFileSync(
    process.execPath,
    ['--input-type=module', '-e', `const {main}=await import(${JSON.stringify(CLI)});process.exitCode=await main(process.argv.slice(1))`, ...args],
    { encoding: 'utf8' },
  );
}

function spawnVerdict(args: string[]): { proc: ChildProcess; out: () => string } {
  // VERDICT_BENCH_PROF=<dir>: CPU profiles of server and agent, to see where the tunnel's time goes.
  const prof = process.env.VERDICT_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.VERDICT_BENCH_PROF}`] : [];
  const proc = spawn(
    process.execPath,
    [...prof, '--input-type=module', '-e', `const {main}=await import(${JSON.stringify(CLI)});process.exitCode=await main(process.argv.slice(1))`, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  return { proc, out: () => out };
}

async function waitFor(what: string, pred: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Target {
  base: string;
  token: string;
  agent: Agent;
}

/** One GET; resolves with the body's size once it is read completely. */
function get(t: Target, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.base}${path}`, { agent: t.agent, headers: { authorization: `Bearer ${t.token}`, accept: 'application/json' } }, (res) => {
      let n = 0;
      res.on('data', (d: Buffer) => (n += d.length));
      res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
    });
    req.on('error', (e) => reject(new Error(`${t.base}${path}: ${e.message}`)));
    req.end();
  });
}

const cpuMs = (pid: number | undefined) => (pid ? processCpuMs(pid) : 0);

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

export default async function bench(): Promise<void> {
  const state = mkdtempSync(join(tmpdir(), 'verdict-bench-ci-'));
  const env = { ...process.env, VERDICT_KUBE_STATE: state, VERDICT_KUBE_OWNER_PID: String(process.pid) };
  const started = spawnSync('bash', [SCRIPT, 'start'], { env, encoding: 'utf8' });
  if (started.status !== 0) {
    console.log(`skipped: scripts/kube.sh start failed (run bash scripts/kube.sh install once):\n${started.stderr.slice(-2000)}`);
    return;
  }
  const field = (k: string) => new RegExp(`^${k}=(\\S+)$`, 'm').exec(started.stdout)?.[1] ?? '';
  const kubectlBin = join(spawnSync('bash', [SCRIPT, 'path'], { env, encoding: 'utf8' }).stdout.trim(), 'kubectl');
  const adminKubeconfig = field('kubeconfig');
  const procs: ChildProcess[] = [];
  try {
    const kubectl = (kubeconfig: string, ...args: string[]) =>
      run(kubectlBin, [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(state, `cache-${kubeconfig.length}`)}`, ...args], {
        env: { ...process.env, KUBERC: 'off' },
        maxBuffer: 256 << 20,
      });
    await kubectl(adminKubeconfig, 'create', 'namespace', 'bench');
    const items = Array.from({ length: CONFIGMAPS }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: `cm-${i}`, namespace: 'bench', labels: { app: 'bench' } },
      data: { index: String(i), payload: 'x'.repeat(200) },
    }));
    writeFileSync(join(state, 'cms.json'), JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    await kubectl(adminKubeconfig, 'create', '-f', join(state, 'cms.json'));

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
    const [grpcPort, proxyPort] = [await freePort(), await freePort()];
    const data = f('verdict-data');
    writeFileSync(
      f('server.yaml'),
      `data_dir: ${data}\nhttp_addr: 127.0.0.1:0\ngrpc_addr: 127.0.0.1:${grpcPort}\ntls: {cert_file: ${f('tls.crt')}, key_file: ${f('tls.key')}}\nkubernetes_api: {listen: "127.0.0.1:${proxyPort}"}\n`,
    );
    writeFileSync(f('agent-token'), verdict(['agents', 'register', 'bench', '--config-project', project, '--data-dir', data]).trim());
    const server = spawnVerdict(['server', '--config', f('server.yaml')]);
    procs.push(server.proc);
    await waitFor('the server', () => server.out().includes('CI tunnel: Kubernetes API proxy listening'));
    const agent = spawnVerdict([
      'agent',
      `--kas-address=grpcs://127.0.0.1:${grpcPort}`,
      `--ca-cert-file=${f('ca.crt')}`,
      `--token-file=${f('agent-token')}`,
      `--data-dir=${f('agent')}`,
      '--observability-addr=',
      `--kubeconfig=${adminKubeconfig}`,
    ]);
    procs.push(agent.proc);
    await waitFor('the agent', () => agent.out().includes('CI tunnel: ready'));
    const jobToken = verdict(['ci-tokens', 'create', '--project', 'bench/app', '--ttl', '1h', '--data-dir', data]).trim();
    const ciKubeconfig = f('ci-kubeconfig');
    writeFileSync(ciKubeconfig, verdict(['kubeconfig', '--ci-token', jobToken, '--config', f('server.yaml'), '--certificate-authority', f('ca.crt')]));
    const agentId = /user: agent:(\d+)/.exec(readFileSync(ciKubeconfig, 'utf8'))![1];

    const keepAlive = (ca: string) => new Agent({ keepAlive: true, ca: readFileSync(ca) });
    const direct: Target = { base: field('server'), token: field('token'), agent: keepAlive(field('ca')) };
    const tunnel: Target = { base: `https://127.0.0.1:${proxyPort}`, token: `ci:${agentId}:${jobToken}`, agent: keepAlive(f('ca.crt')) };
    const one = '/api/v1/namespaces/bench/configmaps/cm-1';
    const all = '/api/v1/namespaces/bench/configmaps';

    // 1. One GET, alternating the paths so both see the same machine.
    for (let i = 0; i < 100; i++) await Promise.all([get(direct, one), get(tunnel, one)]);
    const lat = { direct: [] as number[], tunnel: [] as number[] };
    const tunnelCpu = () => cpuMs(server.proc.pid) + cpuMs(agent.proc.pid);
    let cpu0 = tunnelCpu();
    for (let i = 0; i < 1000; i++) {
      lat.direct.push(await timeIt(() => get(direct, one)));
      lat.tunnel.push(await timeIt(() => get(tunnel, one)));
    }
    const cpuPerGet = (tunnelCpu() - cpu0) / 1000;
    const kget = { direct: [] as number[], tunnel: [] as number[] };
    for (let i = 0; i < 20; i++) {
      kget.direct.push(await timeIt(() => kubectl(adminKubeconfig, 'get', 'configmap', 'cm-1', '-n', 'bench', '-o', 'name')));
      kget.tunnel.push(await timeIt(() => kubectl(ciKubeconfig, 'get', 'configmap', 'cm-1', '-o', 'name')));
    }
    // 2. Lists.
    let bytes = 0;
    const list = { direct: [] as number[], tunnel: [] as number[] };
    let cpuLists = 0;
    for (let i = 0; i < 12; i++) {
      list.direct.push(await timeIt(async () => (bytes = await get(direct, all))));
      cpu0 = tunnelCpu();
      list.tunnel.push(await timeIt(() => get(tunnel, all)));
      cpuLists += tunnelCpu() - cpu0;
    }
    const klist = { direct: [] as number[], tunnel: [] as number[] };
    for (let i = 0; i < 4; i++) {
      klist.direct.push(await timeIt(() => kubectl(adminKubeconfig, 'get', 'configmaps', '-n', 'bench', '-o', 'name')));
      klist.tunnel.push(await timeIt(() => kubectl(ciKubeconfig, 'get', 'configmaps', '-o', 'name')));
    }
    direct.agent.destroy();
    tunnel.agent.destroy();

    const ms = (x: number) => `${x.toFixed(2)} ms`;
    console.log(`GET one ConfigMap (keep-alive HTTPS client, ${lat.direct.length} each, alternating)`);
    console.log('| path | p50 | p90 | p99 |\n|---|---|---|---|');
    for (const k of ['direct', 'tunnel'] as const) console.log(`| ${k} | ${ms(pct(lat[k], 50))} | ${ms(pct(lat[k], 90))} | ${ms(pct(lat[k], 99))} |`);
    const overhead = pct(lat.tunnel, 50) - pct(lat.direct, 50);
    console.log(
      `p50 overhead: ${ms(overhead)} (target < 2 ms: ${overhead < 2 ? 'met' : 'NOT met'}); CPU of server + agent per GET: ${ms(cpuPerGet)}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`,
    );
    console.log(
      `kubectl get configmap (process wall time, ${kget.direct.length} each): p50 direct ${ms(pct(kget.direct, 50))}, tunnel ${ms(pct(kget.tunnel, 50))}, overhead ${ms(pct(kget.tunnel, 50) - pct(kget.direct, 50))}`,
    );
    const rate = (xs: number[]) => bytes / (pct(xs, 50) / 1000) / (1 << 20);
    const ratio = pct(list.direct, 50) / pct(list.tunnel, 50);
    console.log(`\nList of ${CONFIGMAPS} ConfigMaps in one response (${(bytes / (1 << 20)).toFixed(1)} MiB, ${list.direct.length} each, p50)`);
    console.log('| path | time | MiB/s |\n|---|---|---|');
    console.log(`| direct | ${ms(pct(list.direct, 50))} | ${rate(list.direct).toFixed(0)} |`);
    console.log(`| tunnel | ${ms(pct(list.tunnel, 50))} | ${rate(list.tunnel).toFixed(0)} |`);
    console.log(
      `tunnel throughput ${(ratio * 100).toFixed(0)}% of direct (target >= 80%: ${ratio >= 0.8 ? 'met' : 'NOT met'}); CPU of server + agent per list: ${ms(cpuLists / list.tunnel.length)}`,
    );
    console.log(
      `kubectl get configmaps (pages of 500, ${klist.direct.length} each, p50): direct ${ms(pct(klist.direct, 50))}, tunnel ${ms(pct(klist.tunnel, 50))} (${((pct(klist.direct, 50) / pct(klist.tunnel, 50)) * 100).toFixed(0)}%)`,
    );
  } finally {
    // SIGTERM: a profiled process writes its profile on a clean exit.
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    for (const p of procs) p.kill('SIGKILL');
    spawnSync('bash', [SCRIPT, 'stop'], { env });
    rmSync(state, { recursive: true, force: true });
  }
}
