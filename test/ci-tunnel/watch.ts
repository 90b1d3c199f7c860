import { spawn } from 'node:child_process';
import { join } from 'node:path';
import type { Kube } from '../helpers/kube.js';

// `kubectl get configmaps --watch` as a CI job runs it, held open while the
// test changes the cluster: what it printed so far, and how it ended.

export interface ConfigMapWatch {
  readonly out: string;
  readonly err: string;
  /** The exit code once stdout and stderr are closed ('close', not 'exit': stderr may still hold the last message). */
  readonly closed: Promise<number | null>;
  readonly exitCode: number | null;
  kill(): void;
}

/** With `events`, one line per event: its type and the ConfigMap's name (`ADDED  name`). */
export function watchConfigMaps(kube: Kube, kubeconfig: string, o: { events?: boolean } = {}): ConfigMapWatch {
  const args = [`--kubeconfig=${kubeconfig}`, 'get', 'configmaps', '--watch'];
  if (o.events) args.push('--output-watch-events', '-o', 'custom-columns=EVENT:.type,NAME:.object.metadata.name', '--no-headers');
  const p = spawn(join(kube.binDir, 'kubectl'), args, { env: { ...process.env, KUBERC: 'off' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const closed = new Promise<number | null>((resolve) => {
    p.on('close', resolve);
    // kubectl not started at all: its reason is what the test's waits show.
    p.on('error', (e) => {
      err += `\nkubectl: ${e.message}\n`;
      resolve(null);
    });
  });
  return {
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    closed,
    get exitCode() {
      return p.exitCode;
    },
    kill: () => {
      p.kill();
    },
  };
}
