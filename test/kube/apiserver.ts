import { spawn } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Kube } from '../helpers/kube.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/kube.sh', import.meta.url));

// Restarts the kube-apiserver of a control plane started by startKube(),
// keeping etcd and its data: scripts/kube.sh has no command for that, so this
// stops the process recorded in the state dir and starts the same binary with
// the same arguments, recording the new pid where kube.sh looks (so
// `kube.stop()` still stops it). kube.sh's watchdog (which stops the instance
// when the test process dies without stop()) follows one API server pid and
// ends with the old one, so a new one is started for the new pid with the
// script's own `_watch` command.

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function pidFile(kube: Kube): string {
  return join(kube.stateDir, 'kube-apiserver.pid');
}

async function until(ok: () => boolean | Promise<boolean>, what: string, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ready(kube: Kube): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      `${kube.server}/readyz`,
      { ca: readFileSync(kube.caFile), headers: { authorization: `Bearer ${kube.adminToken}` }, timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/**
 * Stops kube-apiserver as a kubelet stops a pod: SIGTERM, then SIGKILL after
 * `graceMs` (measured: with a watch open it otherwise waits its 60 s shutdown
 * timeout for the watch to end). Returns a function that starts it again and
 * waits until /readyz.
 */
export async function stopApiServer(kube: Kube, graceMs = 3000): Promise<() => Promise<void>> {
  const pid = Number(readFileSync(pidFile(kube), 'utf8').trim());
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    .split('\0')
    .filter((a, i, all) => a !== '' || i < all.length - 1);
  process.kill(pid, 'SIGTERM');
  await until(() => !alive(pid), `kube-apiserver ${pid} to exit`, graceMs).catch(() => {
    process.kill(pid, 'SIGKILL');
    return until(() => !alive(pid), `kube-apiserver ${pid} to exit after SIGKILL`, 10_000);
  });
  return async () => {
    const log = openSync(join(kube.stateDir, 'kube-apiserver.log'), 'a');
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    writeFileSync(pidFile(kube), `${child.pid}\n`);
    const watchdog = spawn('bash', [SCRIPT, '_watch', String(process.pid), String(child.pid)], {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, VERDICT_KUBE_STATE: kube.stateDir },
    });
    watchdog.unref();
    writeFileSync(join(kube.stateDir, 'watchdog.pid'), `${watchdog.pid}\n`);
    await until(() => ready(kube), 'kube-apiserver to be ready again', 90_000);
  };
}
