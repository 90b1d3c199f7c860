import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleContext } from '../../src/agent/module.js';
import { openAgentDb } from '../../src/agent/spool/agent-db.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { createGitopsModule } from '../../src/modules/gitops/agent.js';
import type { GitopsConfig } from '../../src/modules/gitops/config.js';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';

// The GitOps module end to end: a real server streams a manifest project to
// the module through a real tunnel, and the module keeps a real API server in
// sync: new commits, drift, a new commit cancelling a slow sync, a project
// dropped from the configuration.

const dir = tempDir('verdict-gitops-agent-');
const logs: { msg: string; [k: string]: unknown }[] = [];
const reports: SyncReport[] = [];
let kube: Kube;
let server: RunningServer;
let tunnel: Tunnel;
let app: ConfigProject;
let ctx: ModuleContext;

const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line) as { msg: string });
    cb();
  },
});

beforeAll(async () => {
  kube = await startKube();
  const config = new ConfigProject(join(dir, 'config'));
  config.commit({ '.gitlab/agents/edge/config.yaml': 'observability: {logging: {level: info}}\n' });
  mkdirSync(join(dir, 'projects', 'group'), { recursive: true });
  app = new ConfigProject(join(dir, 'projects', 'group', 'app'));
  const log = createRootLogger({ level: 'info', destination: sink });
  server = await startServer(
    {
      ...SERVER_DEFAULTS,
      data_dir: join(dir, 'server'),
      http_addr: '127.0.0.1:0',
      grpc_addr: '127.0.0.1:0',
      projects_dir: join(dir, 'projects'),
      gitops_poll_interval: 100,
    },
    log,
  );
  const { token } = server.agents.register('edge', config.dir);
  tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${server.grpcAddress}`), token, log });
  ctx = {
    log: log.child({ mod_name: 'gitops' }),
    db: openAgentDb(join(dir, 'agent')),
    alerts: undefined as never,
    dataDir: join(dir, 'agent'),
    agentName: 'edge',
    files: [],
    tunnel,
  } as ModuleContext;
}, 300_000);

let serverClosed = false;
afterAll(async () => {
  await tunnel?.close();
  if (!serverClosed) await server?.close();
  await kube?.stop();
});

const module = () =>
  createGitopsModule({
    connect: () => ({
      server: kube.server,
      requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
    }),
    onReport: (r) => reports.push(r),
    syncBackoff: { initialMs: 200, maxMs: 500, jitter: false },
    streamBackoff: { initialMs: 100, maxMs: 300, jitter: false },
  });

const block = (extra: Record<string, unknown> = {}) =>
  ({
    manifest_projects: [
      { id: 'group/app', default_namespace: 'gitops', paths: [{ glob: 'manifests/**/*.yaml' }], resync_interval: 1000, reconcile_timeout: 3_600_000, ...extra },
    ],
  }) as unknown as GitopsConfig;

async function data(name: string): Promise<Record<string, string> | undefined> {
  const r = await kube.kubectl(['get', 'configmap', name, '-n', 'gitops', '-o', 'json']);
  return r.code === 0 ? (JSON.parse(r.stdout) as { data: Record<string, string> }).data : undefined;
}

const cm = (name: string, v: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  v: "${v}"\n`;
const slowDeployment =
  'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: slow\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: slow}}\n  template:\n    metadata: {labels: {app: slow}}\n    spec: {containers: [{name: c, image: busybox}]}\n';

describe('GitOps module', () => {
  it('syncs each new commit, corrects drift, and lets a new commit cancel a slow sync', async () => {
    const first = app.commit({ 'manifests/ns.yaml': 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: gitops\n', 'manifests/cm.yaml': cm('settings', '1') });
    const abort = new AbortController();
    const running = module().run(block(), ctx, abort.signal);
    try {
      await until(() => reports.find((r) => r.commit === first && r.ok), 30_000, 'first commit synchronized');
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
      await until(() => reports.find((r) => r.commit === fix && r.ok), 30_000, 'fixed commit synchronized');
      expect(logs.some((l) => l.msg === 'Synchronization was canceled' && l.commit_id === slow)).toBe(true);
      expect(await data('settings')).toEqual({ v: '2' });
      expect((await kube.kubectl(['get', 'deployment', 'slow', '-n', 'gitops'])).code).not.toBe(0);
    } finally {
      abort.abort();
      await running;
    }
  });

  it("reports a failed sync with the object and reason, and leaves a removed project's objects in place", async () => {
    const bad = app.commit({ 'manifests/bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n' });
    let abort = new AbortController();
    let running = module().run(block(), ctx, abort.signal);
    try {
      const r = await until(() => reports.find((x) => x.commit === bad && !x.ok), 30_000, 'failed sync');
      expect(r.result?.objects.find((o) => o.action === 'failed')).toMatchObject({
        source: 'manifests/bad.yaml#1',
        reason: expect.stringContaining('cannot use generate name with apply'),
      });
      expect(logs.some((l) => l.msg === 'Synchronization failed' && String(l.error).includes('manifests/bad.yaml#1'))).toBe(true);
    } finally {
      abort.abort();
      await running;
    }
    abort = new AbortController();
    running = module().run({ manifest_projects: [] } as unknown as GitopsConfig, ctx, abort.signal);
    await until(() => logs.find((l) => String(l.msg).startsWith('GitOps: project removed from the configuration')), 5000, 'removal noticed');
    abort.abort();
    await running;
    expect(await data('settings')).toEqual({ v: '2' });
  });

  it('reports each sync to the server: a failed sync shows in GET /api/v1/agents/:name and raises a gitops alert, the next good sync resolves it; drift likewise', async () => {
    const reader = server.tokens.create('status-reader', 'read').token;
    const get = async <T>(path: string): Promise<T> => {
      const res = await fetch(`http://${server.httpAddress}${path}`, { headers: { authorization: `Bearer ${reader}` } });
      expect(res.status).toBe(200);
      return (await res.json()) as T;
    };
    type Project = {
      project_id: string;
      commit_id: string;
      ok: boolean;
      failed: number;
      drift_corrected: boolean;
      objects: { object: string; source: string; action: string; reason: string }[];
      last_ok_commit: string | null;
    };
    type AgentView = {
      name: string;
      connection: { connected: boolean; since: string | null; version: string | null };
      config: unknown;
      modules: string[];
      module_status: { gitops: { projects: Project[] } };
    };
    type Alert = { id: number; status: string; source: string; title: string; description: string; labels: Record<string, string> };
    const project = async () => (await get<AgentView>('/api/v1/agents/edge')).module_status.gitops.projects.find((p) => p.project_id === 'group/app');
    const gitopsAlerts = async () => (await get<{ alerts: Alert[] }>('/api/v1/alerts?source=gitops&agent=edge&limit=100')).alerts;

    // HEAD still has the ConfigMap with generateName (the test before): the sync fails.
    const bad = app.commit({ 'manifests/cm.yaml': cm('settings', '2b') });
    const abort = new AbortController();
    const running = module().run(block(), ctx, abort.signal);
    try {
      const failed = await until(
        async () => {
          const p = await project();
          return p?.commit_id === bad && !p.ok ? p : undefined;
        },
        30_000,
        'failed sync in GET /api/v1/agents/edge',
      );
      expect(failed.failed).toBe(1);
      expect(failed.objects).toEqual([
        expect.objectContaining({ source: 'manifests/bad.yaml#1', action: 'failed', reason: expect.stringContaining('cannot use generate name with apply') }),
      ]);
      const view = await get<AgentView>('/api/v1/agents/edge');
      expect(view.connection).toMatchObject({ connected: true, version: expect.any(String) });
      expect((await get<{ agents: AgentView[] }>('/api/v1/agents')).agents.map((a) => a.name)).toContain('edge');
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
      await until(
        async () => {
          const p = await project();
          return p?.commit_id === good && p.ok ? p : undefined;
        },
        30_000,
        'good sync in GET /api/v1/agents/edge',
      );
      const resolved = await until(async () => (await gitopsAlerts()).find((a) => a.id === raised.id && a.status === 'resolved'), 10_000, 'alert resolved');
      expect(resolved.status).toBe('resolved');
      const detail = await get<{ history: { to: string; actor: string }[] }>(`/api/v1/alerts/${raised.id}`);
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
      abort.abort();
      await running;
    }
  });

  it('keeps the cluster as last applied while the server is unreachable, drift correction included', async () => {
    app.git('rm', '-q', '--ignore-unmatch', 'manifests/bad.yaml');
    const good = app.commit({ 'manifests/cm.yaml': cm('settings', '3') });
    const abort = new AbortController();
    const running = module().run(block(), ctx, abort.signal);
    try {
      await until(() => reports.find((r) => r.commit === good && r.ok), 30_000, 'good commit synchronized');
      await server.close();
      serverClosed = true;
      await until(() => logs.find((l) => l.msg === 'GitOps: failed to get objects to synchronize'), 10_000, 'the stream noticing the server is gone');
      const before = reports.length;
      await kube.kubectl(['patch', 'configmap', 'settings', '-n', 'gitops', '--type=merge', '-p', '{"data":{"v":"drifted"}}']);
      await until(() => reports.slice(before).find((r) => r.driftCorrected), 10_000, 'drift corrected without the server');
      expect(await data('settings')).toEqual({ v: '3' });
    } finally {
      abort.abort();
      await running;
    }
  });
});
