import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import type { RunningServer } from '../../src/server/server.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { killAll, tempDir, until } from '../helpers/processes.js';
import {
  apiOf,
  capturingLogger,
  configMapData,
  configMapYaml as cm,
  connectAgent,
  gitopsBlock,
  inventoryKeys,
  manifestProject,
  namespaceYaml,
  runGitops,
  spawnAgent,
  startGitopsServer,
  untilReport,
  untilSync,
} from './harness.js';

// A sync interrupted while it waits (a new commit cancels it, or the agent is
// stopped) in the usual layout where the project brings the Namespace its
// inventory lives in: every object it applied is in the inventory already, so
// a later commit that drops one of them prunes it. Real server, real API
// server (no kubelet: a Deployment with a replica never becomes Current, one
// with none does once the deployment controller has seen it).

const dir = tempDir('verdict-gitops-interrupted-');
const { log, logs } = capturingLogger('info');
let kube: Kube;
let server: RunningServer;
let token: string;
let reader: string;

beforeAll(async () => {
  kube = await startKube();
  ({ server, token } = await startGitopsServer(dir, log, {
    agentConfig: ['gitops:', '  manifest_projects:', '    - id: group/kill', '      default_namespace: shop-kill', ''].join('\n'),
  }));
  reader = server.tokens.create('interrupted-test', 'read').token;
}, 300_000);

afterAll(async () => {
  await killAll();
  await server?.close();
  await kube?.stop();
});

const web = (replicas: number) =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n`;

/** QA's layout: the project's Namespace, two ConfigMaps and a Deployment; the second commit drops to-be-pruned and scales web to 0 (Current here). */
const commits = (ns: string) => ({
  first: { 'ns.yaml': namespaceYaml(ns), 'settings.yaml': `${cm('app-settings', '1')}---\n${cm('to-be-pruned', '1')}`, 'web.yaml': web(1) },
  second: { 'settings.yaml': cm('app-settings', '1'), 'web.yaml': web(0) },
});

const deploymentThere = (ns: string) =>
  until(async () => ((await kube.kubectl(['get', 'deployment', 'web', '-n', ns])).code === 0 ? true : undefined), 60_000, `deployment ${ns}/web applied`);

const want = (ns: string) => [`_${ns}__Namespace`, `${ns}_app-settings__ConfigMap`, `${ns}_web_apps_Deployment`];

describe('GitOps: a sync interrupted while it waits, its inventory namespace created by the commit', () => {
  it('cancelled by a new commit: the object that commit drops is pruned', async () => {
    const reports: SyncReport[] = [];
    const app = manifestProject(dir, 'group/cancel');
    const { first, second } = commits('shop-cancel');
    const c1 = app.commit(first);
    const agent = await connectAgent(server, token, log, join(dir, 'agent-cancel'));
    const run = runGitops(kube, agent.ctx, gitopsBlock({ id: 'group/cancel', default_namespace: 'shop-cancel', reconcile_timeout: 3_600_000 }), {
      onReport: (r) => reports.push(r),
      syncBackoff: { initialMs: 200, maxMs: 500, jitter: false },
      streamBackoff: { initialMs: 100, maxMs: 300, jitter: false },
    });
    try {
      await deploymentThere('shop-cancel');
      // Applied, and waited for: the inventory already lists what this sync applies.
      expect(await inventoryKeys(kube, 'shop-cancel', 'inventory-edge-group-cancel')).toContain('shop-cancel_to-be-pruned__ConfigMap');
      const c2 = app.commit(second);
      await untilReport(reports, c2, true, 60_000, 'second commit synchronized');
      expect(logs.some((l) => l.msg === 'Synchronization was canceled' && l.commit_id === c1)).toBe(true);
      expect(reports.some((r) => r.commit === c1)).toBe(false);
      expect(await configMapData(kube, 'shop-cancel', 'to-be-pruned')).toBeUndefined();
      expect(await configMapData(kube, 'shop-cancel', 'app-settings')).toEqual({ v: '1' });
      expect(await inventoryKeys(kube, 'shop-cancel', 'inventory-edge-group-cancel')).toEqual(want('shop-cancel'));
    } finally {
      await run.stop();
      await agent.close();
    }
  }, 180_000);

  it('the agent stopped (SIGTERM) mid-wait and started again on a commit that drops an object: it is pruned', async () => {
    const app = manifestProject(dir, 'group/kill');
    const { first, second } = commits('shop-kill');
    app.commit(first);
    const tokenFile = join(dir, 'agent-token');
    writeFileSync(tokenFile, `${token}\n`);
    let proc = spawnAgent(server, kube, tokenFile, join(dir, 'agent-kill'));
    await deploymentThere('shop-kill');
    await proc.kill('SIGTERM');
    expect(await inventoryKeys(kube, 'shop-kill', 'inventory-edge-group-kill')).toContain('shop-kill_to-be-pruned__ConfigMap');

    const c2 = app.commit(second);
    proc = spawnAgent(server, kube, tokenFile, join(dir, 'agent-kill'));
    const done = await untilSync(() => apiOf(server, reader).project('group/kill'), c2, true, 90_000, 'second commit synchronized');
    expect(done).toMatchObject({ failed: 0, pruned: 1 });
    expect(await configMapData(kube, 'shop-kill', 'to-be-pruned')).toBeUndefined();
    expect(await inventoryKeys(kube, 'shop-kill', 'inventory-edge-group-kill')).toEqual(want('shop-kill'));
    await proc.kill('SIGTERM');
  }, 240_000);
});
