import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleContext } from '../../src/agent/module.js';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import type { RunningServer } from '../../src/server/server.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { type ConfigProject, tempDir, until } from '../helpers/processes.js';
import {
  apiOf,
  capturingLogger,
  configMapData,
  configMapYaml as cm,
  connectAgent,
  gitopsBlock,
  manifestProject,
  namespaceYaml,
  runGitops,
  startGitopsServer,
  untilReport,
  untilSync,
} from './harness.js';

// The GitOps module end to end: a real server streams a manifest project to
// the module through a real tunnel, and the module keeps a real API server in
// sync: new commits, drift, a new commit cancelling a slow sync, a project
// dropped from the configuration.

const dir = tempDir('verdict-gitops-agent-');
const { log, logs } = capturingLogger('info');
const reports: SyncReport[] = [];
let kube: Kube;
let server: RunningServer;
let agent: Awaited<ReturnType<typeof connectAgent>>;
let app: ConfigProject;
let ctx: ModuleContext;

beforeAll(async () => {
  kube = await startKube();
  app = manifestProject(dir, 'group/app');
  let token: string;
  ({ server, token } = await startGitopsServer(dir, log));
  agent = await connectAgent(server, token, log, join(dir, 'agent'));
  ctx = agent.ctx;
}, 300_000);

let serverClosed = false;
afterAll(async () => {
  await agent?.close();
  if (!serverClosed) await server?.close();
  await kube?.stop();
});

const moduleOptions = {
  onReport: (r: SyncReport) => reports.push(r),
  syncBackoff: { initialMs: 200, maxMs: 500, jitter: false },
  streamBackoff: { initialMs: 100, maxMs: 300, jitter: false },
};

const block = (extra: Record<string, unknown> = {}) =>
  gitopsBlock({
    id: 'group/app',
    default_namespace: 'gitops',
    paths: [{ glob: 'manifests/**/*.yaml' }],
    resync_interval: 1000,
    reconcile_timeout: 3_600_000,
    ...extra,
  });

const data = (name: string) => configMapData(kube, 'gitops', name);

const slowDeployment =
  'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: slow}}\n  template:\n    metadata: {labels: {app: slow}}\n    spec: {containers: [{name: c, image: busybox}]}\n';

describe('GitOps module', () => {
  it('syncs each new commit, corrects drift, and lets a new commit cancel a slow sync', async () => {
    const first = app.commit({ 'manifests/ns.yaml': namespaceYaml('gitops'), 'manifests/cm.yaml': cm('settings', '1') });
    const run = runGitops(kube, ctx, block(), moduleOptions);
    try {
      await untilReport(reports, first, true, 30_000, 'first commit synchronized');
      expect(await data('settings')).toEqual({ v: '1' });
      expect(logs.some((l) => l.msg === 'GitOps: new commit' && l.commit_id === first)).toBe(true);
      expect(logs.some((l) => l.msg === 'Objects synchronized' && l.commit_id === first)).toBe(true);

      // Drift: changed behind GitOps' back, put back by the next periodic apply.
      await kube.kubectl(['patch', 'configmap', 'settings', '-n', 'gitops', '--type=merge', '-p', '{"data":{"v":"drifted"}}']);
      await until(() => reports.find((r) => r.driftCorrected), 10_000, 'drift corrected');
      expect(await data('settings')).toEqual({ v: '1' });
      expect(logs.some((l) => l.msg === 'GitOps: drift corrected')).toBe(true);

      // A Deployment that can never become Current here (no kubelet) keeps its sync waiting...
      const slow = app.commit({ 'manifests/deploy.yaml': slowDeployment });
      await until(() => logs.find((l) => l.msg === 'Synchronizing objects' && l.commit_id === slow), 10_000, 'slow sync started');
      await new Promise((r) => setTimeout(r, 500));
      expect(reports.some((r) => r.commit === slow)).toBe(false);
      // ...until the next commit cancels it and is applied instead.
      app.git('rm', '-q', 'manifests/deploy.yaml');
      const fix = app.commit({ 'manifests/cm.yaml': cm('settings', '2') });
      await untilReport(reports, fix, true, 30_000, 'fixed commit synchronized');
      expect(logs.some((l) => l.msg === 'Synchronization was canceled' && l.commit_id === slow)).toBe(true);
      expect(await data('settings')).toEqual({ v: '2' });
      expect((await kube.kubectl(['get', 'deployment', 'slow', '-n', 'gitops'])).code).not.toBe(0);
    } finally {
      await run.stop();
    }
  });

  it("reports a failed sync with the object and reason, and leaves a removed project's objects in place", async () => {
    const bad = app.commit({ 'manifests/bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n' });
    const run = runGitops(kube, ctx, block(), moduleOptions);
    try {
      const r = await untilReport(reports, bad, false, 30_000, 'failed sync');
      expect(r.result?.objects.find((o) => o.action === 'failed')).toMatchObject({
        source: 'manifests/bad.yaml#1',
        reason: expect.stringContaining('cannot use generate name with apply'),
      });
      expect(logs.some((l) => l.msg === 'Synchronization failed' && String(l.error).includes('manifests/bad.yaml#1'))).toBe(true);
    } finally {
      await run.stop();
    }
    const none = runGitops(kube, ctx, gitopsBlock(), moduleOptions);
    await until(() => logs.find((l) => String(l.msg).startsWith('GitOps: project removed from the configuration')), 5000, 'removal noticed');
    await none.stop();
    expect(await data('settings')).toEqual({ v: '2' });
  });

  it('reports each sync to the server: a failed sync shows in GET /api/v1/agents/:name and raises a gitops alert, the next good sync resolves it; drift likewise', async () => {
    const reader = server.tokens.create('status-reader', 'read').token;
    const api = apiOf(server, reader);
    const project = () => api.project('group/app');
    const gitopsAlerts = () => api.gitopsAlerts();

    // HEAD still has the ConfigMap with generateName (the test before): the sync fails.
    const bad = app.commit({ 'manifests/cm.yaml': cm('settings', '2b') });
    const run = runGitops(kube, ctx, block(), moduleOptions);
    try {
      const failed = await untilSync(project, bad, false, 30_000, 'failed sync in GET /api/v1/agents/edge');
      expect(failed.failed).toBe(1);
      expect(failed.objects).toEqual([
        expect.objectContaining({ source: 'manifests/bad.yaml#1', action: 'failed', reason: expect.stringContaining('cannot use generate name with apply') }),
      ]);
      const view = await api.agent('edge');
      expect(view.connection).toMatchObject({ connected: true, version: expect.any(String) });
      expect((await api.agents()).map((a) => a.name)).toContain('edge');
      const raised = await until(
        async () => (await gitopsAlerts()).find((a) => a.status === 'triggered' && a.labels.file === 'manifests/bad.yaml#1'),
        10_000,
        'gitops alert',
      );
      expect(raised.title).toContain('GitOps sync failed');
      expect(raised.description).toContain('cannot use generate name with apply');
      // One alert per project and object: the same failure in the test before (an earlier commit) is the same alert, its labels the first occurrence's.
      expect(raised.labels).toMatchObject({ project: 'group/app', object: expect.stringContaining('ConfigMap') });

      // The fix: the next good sync resolves the alert, by actor gitops.
      app.git('rm', '-q', 'manifests/bad.yaml');
      const good = app.commit({ 'manifests/cm.yaml': cm('settings', '2c') });
      await untilSync(project, good, true, 30_000, 'good sync in GET /api/v1/agents/edge');
      const resolved = await until(async () => (await gitopsAlerts()).find((a) => a.id === raised.id && a.status === 'resolved'), 10_000, 'alert resolved');
      expect(resolved.status).toBe('resolved');
      const detail = await api.alert(raised.id);
      expect(detail.history.some((h) => h.to === 'resolved' && h.actor === 'gitops')).toBe(true);

      // Drift: a correction is an alert too, resolved by the next re-apply that finds nothing to correct.
      await kube.kubectl(['patch', 'configmap', 'settings', '-n', 'gitops', '--type=merge', '-p', '{"data":{"v":"drifted"}}']);
      const drift = await until(
        async () =>
          (await gitopsAlerts()).find((a) => a.status === 'triggered' && a.title.startsWith('GitOps corrected drift') && a.labels.object?.includes('settings')),
        20_000,
        'drift alert',
      );
      expect(drift.labels).toMatchObject({ project: 'group/app', file: 'manifests/cm.yaml#1' });
      await until(async () => (await gitopsAlerts()).find((a) => a.id === drift.id && a.status === 'resolved'), 20_000, 'drift alert resolved');
      expect((await project())?.last_ok_commit).toBe(good);
    } finally {
      await run.stop();
    }
  });

  it('reports a project the server refuses (not under projects_dir) as a sync that could not run: sync status and alert', async () => {
    // Before, only the agent's log said so: the sync status had no row for the project and no alert was raised.
    const reader = server.tokens.create('refusal-reader', 'read').token;
    const api = apiOf(server, reader);
    const run = runGitops(kube, ctx, gitopsBlock({ id: 'group/nope', default_namespace: 'gitops' }), moduleOptions);
    try {
      const r = await until(() => reports.find((x) => x.projectId === 'group/nope'), 10_000, 'refusal reported');
      expect(r).toMatchObject({ commit: '', ok: false, error: expect.stringMatching(/^GitOps: project group\/nope not found under projects_dir /) });
      const status = await until(async () => (await api.project('group/nope')) ?? undefined, 10_000, 'refusal in GET /api/v1/agents/edge');
      expect(status).toMatchObject({ ok: false, error: expect.stringContaining('not found under projects_dir') });
      const alert = await until(
        async () => (await api.gitopsAlerts()).find((a) => a.status === 'triggered' && a.labels.project === 'group/nope'),
        10_000,
        'could-not-run alert',
      );
      expect(alert.title).toBe('GitOps sync of group/nope could not run');
    } finally {
      await run.stop();
    }
  });

  it('keeps the cluster as last applied while the server is unreachable, drift correction included', async () => {
    app.git('rm', '-q', '--ignore-unmatch', 'manifests/bad.yaml');
    const good = app.commit({ 'manifests/cm.yaml': cm('settings', '3') });
    const run = runGitops(kube, ctx, block(), moduleOptions);
    try {
      await untilReport(reports, good, true, 30_000, 'good commit synchronized');
      await server.close();
      serverClosed = true;
      await until(() => logs.find((l) => l.msg === 'GitOps: failed to get objects to synchronize'), 10_000, 'the stream noticing the server is gone');
      const before = reports.length;
      await kube.kubectl(['patch', 'configmap', 'settings', '-n', 'gitops', '--type=merge', '-p', '{"data":{"v":"drifted"}}']);
      await until(() => reports.slice(before).find((r) => r.driftCorrected), 10_000, 'drift corrected without the server');
      expect(await data('settings')).toEqual({ v: '3' });
    } finally {
      await run.stop();
    }
  });
});
