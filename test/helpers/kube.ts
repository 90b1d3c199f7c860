import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager)
// from scripts/kube.sh, one private instance per caller. No scheduler or kubelet.

const SCRIPT = fileURLToPath(new URL('../../scripts/kube.sh', import.meta.url));
const REPO = fileURLToPath(new URL('../../', import.meta.url));

/** What to run once per machine before tests can start a control plane. */
export const KUBE_INSTALL_COMMAND = 'bash scripts/kube.sh install';

/** The Kubernetes release the script builds (VERDICT_KUBE_VERSION or its pin). */
export const KUBE_VERSION: string = (() => {
  const given = process.env.VERDICT_KUBE_VERSION?.trim();
  if (given) return given.startsWith('v') ? given : `v${given}`;
  const m = /^readonly PINNED_KUBE_VERSION=(\S+)$/m.exec(readFileSync(SCRIPT, 'utf8'));
  if (!m) throw new Error(`no PINNED_KUBE_VERSION in ${SCRIPT}`);
  return m[1]!;
})();

export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface KubectlOptions {
  input?: string;
  /** Defaults to the admin kubeconfig. */
  kubeconfig?: string;
  timeoutMs?: number;
}

export interface Kube {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig (system:masters, token auth, CA embedded). */
  kubeconfig: string;
  /** Kubeconfig of the limited user (no RBAC grants). */
  userKubeconfig: string;
  caFile: string;
  adminToken: string;
  userToken: string;
  /** Holds kubectl of the same release (never use a kubectl from PATH). */
  binDir: string;
  stateDir: string;
  /** Runs kubectl as admin (or with opts.kubeconfig); never throws on a non-zero exit. */
  kubectl(args: string[], opts?: KubectlOptions): Promise<KubectlResult>;
  /** Stops all processes and deletes stateDir; safe to call twice. */
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string, timeoutMs = 60_000): Promise<KubectlResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: REPO, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (process.env.VERDICT_TEST_LOGS) process.stderr.write(d);
    });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ stdout, stderr, code: code ?? (signal ? 128 : 1) });
    });
    // A process that exits without reading its input (kubectl refusing its flags,
    // the script failing early) closes the pipe: its exit code says what went wrong,
    // so the EPIPE on our side is not an error of its own.
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

/**
 * Starts a private control plane in a fresh state dir under os.tmpdir(). It is
 * also stopped when this process exits without calling stop(). Throws an Error
 * whose message is KUBE_INSTALL_COMMAND when the binaries are not built yet.
 */
export async function startKube(): Promise<Kube> {
  const stateDir = mkdtempSync(join(tmpdir(), 'verdict-kube-'));
  const env = { ...process.env, VERDICT_KUBE_STATE: stateDir, VERDICT_KUBE_OWNER_PID: String(process.pid) };
  const started = await run('bash', [SCRIPT, 'start'], env, undefined, 300_000);
  if (started.code !== 0) {
    // The script checks the binaries and their versions; trust its verdict.
    if (started.stderr.includes(`run: ${KUBE_INSTALL_COMMAND}`)) {
      rmSync(stateDir, { recursive: true, force: true });
      throw new Error(KUBE_INSTALL_COMMAND);
    }
    // stop deletes the state dir: the log tail is in stderr, kept in the message.
    await run('bash', [SCRIPT, 'stop'], env).catch(() => undefined);
    throw new Error(`scripts/kube.sh start failed (exit ${started.code}):\n${started.stderr.slice(-4000)}`);
  }
  const field = (k: string): string => {
    const m = new RegExp(`^${k}=(\\S+)$`, 'm').exec(started.stdout);
    if (!m) throw new Error(`scripts/kube.sh start printed no ${k}= line: ${JSON.stringify(started.stdout)}`);
    return m[1]!;
  };
  const path = await run('bash', [SCRIPT, 'path'], env);
  const binDir = path.stdout.trim();
  const kubeconfig = field('kubeconfig');
  // A private discovery cache: ports are reused across instances with other CRDs.
  const cacheDir = join(stateDir, 'kubectl-cache');
  return {
    server: field('server'),
    kubeconfig,
    userKubeconfig: join(stateDir, 'user-kubeconfig'),
    caFile: field('ca'),
    adminToken: field('token'),
    userToken: readFileSync(join(stateDir, 'user-token'), 'utf8').trim(),
    binDir,
    stateDir,
    // KUBERC=off: a user's ~/.kube/kuberc must not change kubectl's behaviour.
    kubectl: (args, opts = {}) =>
      run(
        join(binDir, 'kubectl'),
        [`--kubeconfig=${opts.kubeconfig ?? kubeconfig}`, `--cache-dir=${cacheDir}`, ...args],
        { ...process.env, KUBERC: 'off' },
        opts.input,
        opts.timeoutMs,
      ),
    stop: async () => {
      const r = await run('bash', [SCRIPT, 'stop'], env);
      if (r.code !== 0) throw new Error(`scripts/kube.sh stop failed (exit ${r.code}):\n${r.stderr}`);
    },
  };
}
