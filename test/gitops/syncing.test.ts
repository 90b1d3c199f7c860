import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import type { RunningServer } from '../../src/server/server.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { tempDir, until } from '../helpers/processes.js';
import { apiOf, capturingLogger, connectAgent, gitopsBlock, manifestProject, namespaceYaml, runGitops, startGitopsServer, untilReport } from './harness.js';

// A sync under way in the agents API: between the commit the server sends and
// the agent's report of it, the project is listed under
// module_status.gitops.syncing (commit, since when), so a first sync that
// waits on a Deployment is not mistaken for a project never configured.
// Real server, real API server (no kubelet: a Deployment with a replica never
// becomes Current).

const dir = tempDir('verdict-gitops-syncing-');
const { log } = capturingLogger('info');
let kube: Kube;
let server: RunningServer;
let token: string;
let reader: string;

beforeAll(async () => {
  kube = await startKube();
  ({ server, token } = await startGitopsServer(dir, log));
  reader = server.tokens.create('syncing-test', 'read').token;
}, 300_000);

afterAll(async () => {
  await server?.close();
  await kube?.stop();
});

const web = (replicas: number) =>
  `apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: ${replicas}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n`;

interface GitopsStatus {
  projects: { project_id: string; commit_id: string; ok: boolean }[];
  syncing: { project_id: string; commit_id: string; since: string }[];
}

describe('GitOps sync status: a sync under way', () => {
  it('GET /api/v1/agents/:name lists a first sync waiting on a Deployment as syncing, with its commit and since when, until its report', async () => {
    const reports: SyncReport[] = [];
    const api = apiOf(server, reader);
    const gitops = async () => (await api.agent()).module_status.gitops as unknown as GitopsStatus;
    const app = manifestProject(dir, 'group/app');
    const before = new Date().toISOString();
    const c1 = app.commit({ 'ns.yaml': namespaceYaml('shop'), 'web.yaml': web(1) });
    const agent = await connectAgent(server, token, log, join(dir, 'agent'));
    const run = runGitops(kube, agent.ctx, gitopsBlock({ id: 'group/app', default_namespace: 'shop', reconcile_timeout: 3_600_000 }), {
      onReport: (r) => reports.push(r),
      syncBackoff: { initialMs: 200, maxMs: 500, jitter: false },
      streamBackoff: { initialMs: 100, maxMs: 300, jitter: false },
    });
    try {
      await until(async () => ((await kube.kubectl(['get', 'deployment', 'web', '-n', 'shop'])).code === 0 ? true : undefined), 60_000, 'web applied');
      const waiting = await gitops();
      expect(waiting.projects).toEqual([]);
      expect(waiting.syncing).toEqual([{ project_id: 'group/app', commit_id: c1, since: expect.any(String) }]);
      expect(waiting.syncing[0]!.since >= before).toBe(true);

      // A commit that can finish (no replica): reported, and no longer under way.
      const c2 = app.commit({ 'web.yaml': web(0) });
      await untilReport(reports, c2, true, 60_000, 'second commit synchronized');
      const done = await until(
        async () => {
          const g = await gitops();
          return g.projects[0]?.commit_id === c2 ? g : undefined;
        },
        20_000,
        'the report reaches the server',
      );
      expect(done.projects).toMatchObject([{ project_id: 'group/app', commit_id: c2, ok: true }]);
      expect(done.syncing).toEqual([]);
    } finally {
      await run.stop();
      await agent.close();
    }
  }, 180_000);
});
