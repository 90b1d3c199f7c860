import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer as createNetServer } from 'node:net';
import { fileURLToPath } from 'node:url';

// Tests drive real Verdict processes (the built CLI in dist/) over loopback.

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const FIXTURES = join(REPO, '../shared/fixtures');
const BIN = join(REPO, 'bin/verdict.js');

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

export class VerdictProcess {
  readonly logs: LogLine[] = [];
  stdout = '';
  stderr = '';
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  readonly exited: Promise<number | null>;

  constructor(
    readonly proc: ChildProcess,
    readonly name: string,
  ) {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (d: string) => {
      this.stdout += d;
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.onLine(line);
      }
    });
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (d: string) => {
      this.stderr += d;
      for (const line of d.split('\n')) this.onLine(line);
    });
    // A write to a process that has exited fails with EPIPE: the test that wrote
    // finds out from what the process no longer does, and the reason is kept with
    // its output for the failure message, not raised as an error of this process.
    proc.stdin?.on('error', (e) => (this.stderr += `\n[${name}: writing to its stdin failed: ${e.message}]\n`));
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code) => resolve(code));
      // Not started at all (or not killable): it is as good as exited, and says why.
      proc.on('error', (e) => {
        this.stderr += `\n[${name}: ${e.message}]\n`;
        if (proc.exitCode === null && proc.pid === undefined) resolve(null);
      });
    });
  }

  private onLine(line: string): void {
    if (!line.startsWith('{')) return;
    let l: LogLine;
    try {
      l = JSON.parse(line) as LogLine;
    } catch {
      return;
    }
    this.logs.push(l);
    if (process.env.VERDICT_TEST_LOGS) process.stderr.write(`[${this.name}] ${line}\n`);
    this.waiters = this.waiters.filter((w) => {
      if (w.pred(l)) {
        w.resolve(l);
        return false;
      }
      return true;
    });
  }

  /** Resolves with the first log line (past or future) that matches. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 20_000, what = 'log line'): Promise<LogLine> {
    const found = this.logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: timed out waiting for ${what}; last logs:\n${this.logs
                .slice(-15)
                .map((l) => JSON.stringify(l))
                .join('\n')}\nstderr: ${this.stderr.slice(-2000)}`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }

  async waitForStdout(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    const start = Date.now();
    while (Date.now() - start < timeoutMs) {
      const m = re.exec(this.stdout);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`${this.name}: timed out waiting for ${re} on stdout; got: ${this.stdout.slice(-500)} stderr: ${this.stderr.slice(-2000)}`);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    return this.exited;
  }
}

const running = new Set<VerdictProcess>();

export function spawnVerdict(args: string[], name = args[0] ?? 'verdict', env: Record<string, string> = {}): VerdictProcess {
  const proc = spawn(process.execPath, [BIN, ...args], { cwd: REPO, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const p = new VerdictProcess(proc, name);
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/**
 * `verdict demo` in dataDir on free ports (feed, agent API, Falco input), so it
 * runs beside any other demo; the Relay and Falco sources send every 300 ms.
 */
export async function spawnDemo(dataDir: string, extra: string[] = []): Promise<VerdictProcess> {
  const [http, grpc, falco] = [await freePort(), await freePort(), await freePort()];
  const addrs = ['--http-addr', `127.0.0.1:${http}`, '--grpc-addr', `127.0.0.1:${grpc}`, '--falco-addr', `127.0.0.1:${falco}`];
  return spawnVerdict(['demo', '--data-dir', dataDir, ...addrs, '--interval', '300', ...extra], 'demo');
}

export async function killAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.kill('SIGKILL')));
}

/** Runs the CLI to completion and returns stdout (throws with stderr on failure). */
export function verdictSync(args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Runs the CLI to completion and returns its exit status and output; never throws. A run that could not start or
 * outlived `timeout` (ms, default 20 s) has status null, and stderr ends with why.
 */
export function verdictRun(
  args: string[],
  opts: { timeout?: number; env?: Record<string, string>; input?: string } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: REPO,
    env: { ...process.env, ...opts.env },
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeout ?? 20_000,
  });
  const stderr = r.error ? `${r.stderr ?? ''}\n[verdict ${args.join(' ')}: ${r.error.message}]\n` : r.stderr;
  return { status: r.status, stdout: r.stdout ?? '', stderr };
}

export function tempDir(prefix = 'verdict-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A configuration project: a git repository with files committed on main. */
export class ConfigProject {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.git('init', '-q', '-b', 'main');
  }
  git(...args: string[]): string {
    return execFileSync('git', ['-C', this.dir, '-c', 'user.name=test', '-c', 'user.email=test@verdict.invalid', '-c', 'commit.gpgsign=false', ...args], {
      encoding: 'utf8',
    }).trim();
  }
  commit(files: Record<string, string>, message = 'update'): string {
    for (const [path, content] of Object.entries(files)) {
      mkdirSync(dirname(join(this.dir, path)), { recursive: true });
      writeFileSync(join(this.dir, path), content);
    }
    this.git('add', '-A');
    this.git('commit', '-q', '-m', message);
    return this.git('rev-parse', 'HEAD');
  }
}

/** Polls `fn` until it returns a value other than undefined or false; `what` names it in the timeout's error (a function: read at the timeout, for output that grows while waiting). */
export async function until<T>(fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, what: string | (() => string) = 'condition'): Promise<T> {
  const start = Date.now();
  let last: unknown;
  while (Date.now() - start < timeoutMs) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}${last ? `: ${(last as Error).message}` : ''}`);
}

// A port picked by listening on port 0 comes from the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, 32768+ by default on Linux), which
// every outgoing connection on the machine also draws from: one could take it
// between the pick and the server's listen (CI saw EADDRINUSE that way). So
// ports come from below it, each vitest worker from its own stretch, and below
// 20000, clear of scripts/kube.sh and scripts/kafka.sh, which pick from 20000 up.
const WORKERS = 4;
const SCRIPTS_FROM = 20_000;
const [PORTS_FROM, PORTS_PER_WORKER] = portStretch();
const worker = (Number(process.env.VITEST_POOL_ID ?? 1) - 1) % WORKERS;
// A random start: a process of the previous test file in this worker may still hold its ports.
let nextPort = Math.floor(Math.random() * PORTS_PER_WORKER);

/** The first port and the size of each worker's stretch: 10000-19999 when the ephemeral range starts at 20000 or above. */
function portStretch(): [from: number, perWorker: number] {
  let ephemeral = Number.NaN;
  try {
    ephemeral = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  } catch {
    // Not Linux, or /proc not mounted: the numbers for Linux's default range.
  }
  const to = Number.isInteger(ephemeral) ? Math.min(SCRIPTS_FROM, ephemeral) : SCRIPTS_FROM;
  const from = Math.max(1024, Math.min(10_000, to - 10_000));
  // An ephemeral range that leaves next to nothing below it: no stretch is clear of it, so today's numbers.
  if (to - from < WORKERS * 100) return [10_000, 2_500];
  return [from, Math.floor((to - from) / WORKERS)];
}

/** A loopback port no socket uses now and no other worker or outgoing connection will take. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < PORTS_PER_WORKER; i++) {
    const port = PORTS_FROM + worker * PORTS_PER_WORKER + (nextPort++ % PORTS_PER_WORKER);
    if (await bindable(port)) return port;
  }
  throw new Error(`no free loopback port in ${PORTS_FROM + worker * PORTS_PER_WORKER}-${PORTS_FROM + (worker + 1) * PORTS_PER_WORKER - 1}`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createNetServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '127.0.0.1', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** The git commands `fn` runs (their arguments), through a `git` first on PATH that logs each call and runs the real one. */
export async function gitCalls(fn: () => Promise<unknown>): Promise<string[]> {
  const bin = tempDir('verdict-git-calls-');
  const calls = join(bin, 'calls');
  const real = execFileSync('sh', ['-c', 'command -v git'], { encoding: 'utf8' }).trim();
  writeFileSync(join(bin, 'git'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${calls}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
  const path = process.env.PATH;
  process.env.PATH = `${bin}:${path}`;
  try {
    await fn();
  } finally {
    process.env.PATH = path;
  }
  return existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean) : [];
}
