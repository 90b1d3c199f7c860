import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// A private Kubernetes control plane (scripts/kube.sh) for a benchmark: the
// bench-side twin of test/helpers/kube.ts. A benchmark that cannot get one
// prints why and returns: benchmarks report, they do not fail the run.

const SCRIPT = fileURLToPath(new URL('../../scripts/kube.sh', import.meta.url));
const execFileP = promisify(execFile);

export interface BenchKube {
  /** https://127.0.0.1:<port> */
  server: string;
  /** Admin kubeconfig (system:masters, token auth, CA embedded). */
  kubeconfig: string;
  caFile: string;
  /** Admin bearer token. */
  token: string;
  /** kubectl of the same release (never one from PATH). */
  kubectlPath: string;
  /** Private; deleted by stop(). Room for the benchmark's own files. */
  stateDir: string;
  /** The API server's and etcd's pids, for CPU per item (src/bench/proc.ts). */
  pids: { apiserver: number | undefined; etcd: number | undefined };
  /** Runs kubectl (admin unless `kubeconfig` is given); rejects on a non-zero exit. */
  kubectl(args: string[], opts?: { kubeconfig?: string }): Promise<{ stdout: string; stderr: string }>;
  /** Stops the processes and deletes stateDir; safe to call twice. */
  stop(): void;
}

/**
 * Starts one, or prints a `skipped:` line and returns undefined when
 * scripts/kube.sh cannot (binaries not built: `bash scripts/kube.sh install`).
 * The control plane is also stopped when this process exits without stop().
 */
export function startBenchKube(prefix = 'verdict-bench-kube-'): BenchKube | undefined {
  const stateDir = mkdtempSync(join(tmpdir(), prefix));
  const env = { ...process.env, VERDICT_KUBE_STATE: stateDir, VERDICT_KUBE_OWNER_PID: String(process.pid) };
  const started = spawnSync('bash', [SCRIPT, 'start'], { env, encoding: 'utf8' });
  if (started.status !== 0) {
    spawnSync('bash', [SCRIPT, 'stop'], { env });
    rmSync(stateDir, { recursive: true, force: true });
    console.log(`skipped: scripts/kube.sh start failed (run bash scripts/kube.sh install once):\n${started.stderr.slice(-2000)}`);
    return undefined;
  }
  const field = (k: string) => new RegExp(`^${k}=(\\S+)$`, 'm').exec(started.stdout)?.[1] ?? '';
  const pid = (c: string) => {
    try {
      return Number(readFileSync(join(stateDir, `${c}.pid`), 'utf8').trim()) || undefined;
    } catch {
      return undefined;
    }
  };
  const kubeconfig = field('kubeconfig');
  const kubectlPath = join(spawnSync('bash', [SCRIPT, 'path'], { env, encoding: 'utf8' }).stdout.trim(), 'kubectl');
  let stopped = false;
  return {
    server: field('server'),
    kubeconfig,
    caFile: field('ca'),
    token: field('token'),
    kubectlPath,
    stateDir,
    pids: { apiserver: pid('kube-apiserver'), etcd: pid('etcd') },
    kubectl: (args, opts = {}) => {
      const config = opts.kubeconfig ?? kubeconfig;
      // A discovery cache per kubeconfig: the first call's discovery is not timed again, and users do not share one.
      const cache = join(stateDir, `kubectl-cache-${createHash('sha256').update(config).digest('hex').slice(0, 8)}`);
      // KUBERC=off: a user's ~/.kube/kuberc must not change kubectl's behaviour.
      return execFileP(kubectlPath, [`--kubeconfig=${config}`, `--cache-dir=${cache}`, ...args], {
        env: { ...process.env, KUBERC: 'off' },
        maxBuffer: 256 << 20,
      });
    },
    stop: () => {
      if (stopped) return;
      stopped = true;
      spawnSync('bash', [SCRIPT, 'stop'], { env });
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
