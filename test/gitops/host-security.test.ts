import { cpSync, mkdirSync, readFileSync } from 'node:fs';
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
import { type RunningServer, startServer } from '../../src/server/server.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { ConfigProject, REPO, tempDir, until } from '../helpers/processes.js';

// deploy/host-security/ as a manifest project: committed to a project under
// the server's projects_dir, synchronised by the GitOps module through a real
// tunnel into a real API server (with strict field validation), every object
// Current (DaemonSets included: the controller has observed them).

const dir = tempDir('verdict-host-security-');
let kube: Kube;
let server: RunningServer;
let tunnel: Tunnel;
const reports: SyncReport[] = [];

beforeAll(async () => {
  kube = await startKube();
  const config = new ConfigProject(join(dir, 'config'));
  config.commit({ '.gitlab/agents/edge/config.yaml': 'observability: {logging: {level: info}}\n' });
  mkdirSync(join(dir, 'projects', 'platform'), { recursive: true });
  const project = new ConfigProject(join(dir, 'projects', 'platform', 'host-security'));
  cpSync(join(REPO, 'deploy/host-security'), join(project.dir, 'deploy/host-security'), { recursive: true });
  project.commit({});
  const log = createRootLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
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
}, 300_000);

afterAll(async () => {
  await tunnel?.close();
  await server?.close();
  await kube?.stop();
});

describe('deploy/host-security', () => {
  it('syncs through the GitOps module: Falco posting to the agent, AppArmor profiles and their loader', async () => {
    const abort = new AbortController();
    const ctx = {
      log: createRootLogger({ level: 'silent' }),
      db: openAgentDb(join(dir, 'agent')),
      alerts: undefined as never,
      dataDir: join(dir, 'agent'),
      agentName: 'edge',
      files: [],
      tunnel,
    } as ModuleContext;
    const running = createGitopsModule({
      connect: () => ({
        server: kube.server,
        requestOptions: async () => ({ ca: readFileSync(kube.caFile), headers: { Authorization: `Bearer ${kube.adminToken}` } }),
      }),
      onReport: (r) => reports.push(r),
      syncBackoff: { initialMs: 500, maxMs: 1000, jitter: false },
    }).run(
      {
        manifest_projects: [
          { id: 'platform/host-security', default_namespace: 'default', paths: [{ glob: 'deploy/host-security/*.yaml' }], reconcile_timeout: 60_000 },
        ],
      } as unknown as GitopsConfig,
      ctx,
      abort.signal,
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
      const cm = JSON.parse((await kube.kubectl(['get', 'configmap', 'falco', '-n', 'falco', '-o', 'json'])).stdout) as { data: Record<string, string> };
      expect(cm.data['verdict.yaml']).toContain('url: http://verdict-agent-falco.verdict-agent.svc:2801/');
      const ds = JSON.parse((await kube.kubectl(['get', 'daemonset', 'falco', '-n', 'falco', '-o', 'json'])).stdout) as {
        metadata: { labels: Record<string, string> };
        status: { observedGeneration?: number };
      };
      // The label deploy/network-policies/ admits to the agent's Falco input.
      expect(ds.metadata.labels['app.kubernetes.io/name']).toBe('falco');
      expect(ds.status.observedGeneration).toBe(1);
    } finally {
      abort.abort();
      await running;
    }
  });
});
