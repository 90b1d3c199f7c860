// The policy watch while the real kube-apiserver goes away: restarted
// mid-watch (etcd and its data kept), and frozen (SIGSTOP: the connection
// stays open and silent, as with a hung server or a dead network path).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { stopApiServer } from './apiserver.js';
import { apply, attributed, cnp, installCrds, must, namespace, toWeb, until, watch, type Watched } from './policies.js';

let kube: Kube;
const running: Watched[] = [];

beforeAll(async () => {
  kube = await startKube();
  await installCrds(kube);
  await apply(kube, namespace('shop'), cnp('web-80', 'shop', 'web', ['80']));
}, 300_000);

afterAll(async () => {
  for (const w of running) await w.stop();
  await kube?.stop();
}, 60_000);

function apiServerPid(): number {
  return Number(readFileSync(`${kube.stateDir}/kube-apiserver.pid`, 'utf8'));
}

describe('policy watch across API server outages', () => {
  it('the API server restarted mid-watch: keeps the last set while it is down, then relists after 410 Gone and follows changes again', async () => {
    const w = watch(kube.kubeconfig, { kinds: ['CiliumNetworkPolicy'] });
    running.push(w);
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    expect(w.blame(toWeb(8080))).toEqual(['shop/web-80']);
    const listedRv = Number(w.logs.find((l) => l.msg === 'Listed network policies')!.obj.resource_version);
    // The cluster moves on while this watch has nothing newer: its position is now behind.
    await must(kube, ['create', 'configmap', 'moved-on', '-n', 'shop', '--from-literal=a=b']);

    const start = await stopApiServer(kube);
    await until(() => w.logs.find((l) => l.level === 'error' && l.msg === 'Policy list/watch failed; retrying'), 'the watch to notice the outage');
    // Flows are still judged against the policies last listed.
    expect(w.blame(toWeb(8080))).toEqual(['shop/web-80']);
    await start();

    // A restarted API server's watch cache begins at etcd's current revision,
    // so a watch from an older one is "too old resource version" (410 Expired): relist.
    const gone = await until(() => w.logs.find((l) => l.msg === 'Policy watch expired (410 Gone); listing again'), '410 Gone after the restart', 30_000);
    expect(Number(gone.obj.resource_version)).toBe(listedRv);
    const relisted = await until(() => w.logs.filter((l) => l.msg === 'Listed network policies')[1], 'the relist');
    expect(Number(relisted.obj.resource_version)).toBeGreaterThan(listedRv);
    await apply(kube, cnp('web-80', 'shop', 'web', ['80', '8080']));
    await attributed(w, toWeb(8080), null, 'a change after the restart');
    // It came on the new watch, not with another list.
    expect(w.logs.filter((l) => l.msg === 'Listed network policies')).toHaveLength(2);
    await w.stop();
  });

  it('a frozen API server (open, silent connection) is given up after the idle timeout and the watch resumes when it answers again', async () => {
    // Healthy, the server ends each watch after 2 s, well inside the 4 s idle timeout.
    const w = watch(kube.kubeconfig, { kinds: ['CiliumNetworkPolicy'], watchTimeoutSeconds: 2, idleTimeoutMs: 4000 });
    running.push(w);
    expect(await w.watcher.waitReady(10_000)).toBe(true);
    await until(() => (w.logs.filter((l) => l.msg === 'Watching network policies').length >= 3 ? true : undefined), 'three renewed watches');
    expect(w.logs.filter((l) => l.level === 'error')).toEqual([]);
    const pid = apiServerPid();
    process.kill(pid, 'SIGSTOP');
    try {
      const err = await until(() => w.logs.find((l) => l.level === 'error'), 'the idle timeout', 15_000);
      expect(String(err.obj.error)).toMatch(/no data for 4 s/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await apply(kube, cnp('web-80', 'shop', 'web', ['80']));
    await attributed(w, toWeb(8080), ['shop/web-80'], 'a change after the server answers again', 20_000);
    await w.stop();
  });
});
