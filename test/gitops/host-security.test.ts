import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { REPO, tempDir, until } from '../helpers/processes.js';
import { configMapData, gitopsBlock, manifestProject, runGitops, startServerAndAgent } from './harness.js';

// deploy/host-security/ as a manifest project: committed to a project under
// the server's projects_dir, synchronised by the GitOps module through a real
// tunnel into a real API server (with strict field validation), every object
// Current (DaemonSets included: the controller has observed them).

const dir = tempDir('verdict-host-security-');
const log = createRootLogger({ level: 'silent' });
let kube: Kube;
let bed: Awaited<ReturnType<typeof startServerAndAgent>>;
let agent: typeof bed.agent;
const reports: SyncReport[] = [];

beforeAll(async () => {
  kube = await startKube();
  const project = manifestProject(dir, 'platform/host-security');
  cpSync(join(REPO, 'deploy/host-security'), join(project.dir, 'deploy/host-security'), { recursive: true });
  project.commit({});
  bed = await startServerAndAgent(dir, log);
  agent = bed.agent;
}, 300_000);

afterAll(async () => {
  await bed?.close();
  await kube?.stop();
});

describe('deploy/host-security', () => {
  it('syncs through the GitOps module: Falco posting to the agent, AppArmor profiles and their loader', async () => {
    const run = runGitops(
      kube,
      agent.ctx,
      gitopsBlock({ id: 'platform/host-security', default_namespace: 'default', paths: [{ glob: 'deploy/host-security/*.yaml' }], reconcile_timeout: 60_000 }),
      { onReport: (r) => reports.push(r), syncBackoff: { initialMs: 500, maxMs: 1000, jitter: false } },
    );
    try {
      const r = await until(() => reports[0], 90_000, 'a sync report');
      expect(JSON.stringify(r.result?.objects.filter((o) => o.action === 'failed'))).toBe('[]');
      expect(r.ok).toBe(true);
      expect(r.result?.objects.map((o) => o.object).sort()).toEqual(
        [
          'Namespace apparmor',
          'Namespace falco',
          'ServiceAccount falco/falco',
          'ConfigMap apparmor/apparmor-profiles',
          'ConfigMap falco/falco',
          'apps/DaemonSet apparmor/apparmor-loader',
          'apps/DaemonSet falco/falco',
          'rbac.authorization.k8s.io/ClusterRole verdict-falco',
          'rbac.authorization.k8s.io/ClusterRoleBinding verdict-falco',
        ].sort(),
      );
      expect((await configMapData(kube, 'falco', 'falco'))?.['verdict.yaml']).toContain('url: http://verdict-agent-falco.verdict-agent.svc:2801/');
      const ds = JSON.parse((await kube.kubectl(['get', 'daemonset', 'falco', '-n', 'falco', '-o', 'json'])).stdout) as {
        metadata: { labels: Record<string, string> };
        status: { observedGeneration?: number };
      };
      // The label deploy/network-policies/ admits to the agent's Falco input.
      expect(ds.metadata.labels['app.kubernetes.io/name']).toBe('falco');
      expect(ds.status.observedGeneration).toBe(1);
    } finally {
      await run.stop();
    }
  });
});
