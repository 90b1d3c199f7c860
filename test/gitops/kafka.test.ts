import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import { type Broker, startBroker, stopBroker } from '../../src/server/kafka/testing.js';
import type { Alert } from '../../src/server/feed/web/api-types.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { kafkaConfigForBootstrap } from '../../src/shared/config/kafka-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { type ConfigProject, tempDir, until } from '../helpers/processes.js';
import {
  apiOf,
  configMapYaml,
  connectAgent,
  gitopsBlock,
  manifestProject,
  namespaceYaml,
  runGitops,
  serverSettings,
  startGitopsServer,
  untilReport,
  untilSync,
} from './harness.js';

// GitOps with the server in Kafka mode: two replicas on a real broker, the
// GitOps module syncing a real API server. A failed sync reported to one
// replica raises a gitops alert every replica's feed shows; the agent then
// reconnects to the other replica, and the next good sync, reported there,
// resolves it everywhere. An agent that disconnects shows as not connected.

const dir = tempDir('verdict-gitops-kafka-');
const log = createRootLogger({ level: 'warn' });
let broker: Broker;
let kube: Kube;
const replicas: Record<'a' | 'b', RunningServer> = {} as never;
let app: ConfigProject;
let agentToken = '';
let reader = '';
const reports: SyncReport[] = [];

beforeAll(async () => {
  broker = startBroker(join(dir, 'kafka'));
  kube = await startKube();
  const kafka = kafkaConfigForBootstrap(broker.bootstrap, {
    topic_prefix: `g${randomUUID().slice(0, 8)}`,
    export_topic: '',
    partitions: 3,
    session_timeout: '6s',
  });
  app = manifestProject(dir, 'group/app');
  // The agent registered on one replica, accepted by both (tokens go through Kafka).
  let a: RunningServer;
  ({ server: a, token: agentToken } = await startGitopsServer(dir, log.child({ replica: 'a' }), { settings: { data_dir: join(dir, 'a'), kafka } }));
  replicas.a = a;
  replicas.b = await startServer(serverSettings(dir, { data_dir: join(dir, 'b'), kafka }), log.child({ replica: 'b' }));
  reader = replicas.a.tokens.create('gitops-kafka', 'read').token;
  await until(
    () => (replicas.b.agents.authenticate(agentToken) && replicas.b.tokens.verify(reader) ? true : undefined),
    30_000,
    'replica b to know the tokens',
  );
}, 400_000);

afterAll(async () => {
  for (const r of Object.values(replicas)) await r.close().catch(() => undefined);
  await kube?.stop();
  if (broker) stopBroker(broker);
}, 120_000);

const api = (r: RunningServer) => apiOf(r, reader);
const gitopsAlerts = (r: RunningServer) => api(r).gitopsAlerts();
const agentOn = async (r: RunningServer) => (await api(r).listed('edge'))!;

/** The GitOps module as the agent runs it, through a tunnel to one replica; stop() ends both. */
async function runAgent(r: RunningServer): Promise<{ stop(): Promise<void> }> {
  const agent = await connectAgent(r, agentToken, log, join(dir, `agent-${randomUUID()}`));
  const run = runGitops(
    kube,
    agent.ctx,
    gitopsBlock({ id: 'group/app', default_namespace: 'gitops-kafka', paths: [{ glob: 'manifests/**/*.yaml' }], resync_interval: 60_000 }),
    {
      onReport: (x) => reports.push(x),
      syncBackoff: { initialMs: 300, maxMs: 1000, jitter: false },
      streamBackoff: { initialMs: 100, maxMs: 300, jitter: false },
    },
  );
  return {
    async stop() {
      await run.stop();
      await agent.close();
    },
  };
}

describe('GitOps on Kafka replicas', () => {
  it('a failed sync raises a gitops alert every replica shows; the next good sync, reported to the other replica, resolves it everywhere', async () => {
    const bad = app.commit({
      'manifests/ns.yaml': namespaceYaml('gitops-kafka'),
      'manifests/cm.yaml': configMapYaml('settings', '1'),
      'manifests/bad.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: x-\n',
    });
    let agent = await runAgent(replicas.a);
    let raised: Alert;
    try {
      await untilReport(reports, bad, false, 60_000, 'the failed sync');
      // Raised through the log: replica b, which the agent never called, has it too.
      const open = (r: RunningServer) => async () => (await gitopsAlerts(r)).find((a) => a.status === 'triggered' && a.labels.file === 'manifests/bad.yaml#1');
      raised = await until(open(replicas.a), 30_000, 'the gitops alert on replica a');
      expect(raised.title).toContain('GitOps sync failed');
      const onB = await until(open(replicas.b), 30_000, 'the gitops alert on replica b');
      expect(onB.labels).toMatchObject({ project: 'group/app', commit: bad });
      expect((await agentOn(replicas.a)).module_status.gitops?.projects).toEqual([
        expect.objectContaining({ project_id: 'group/app', commit_id: bad, ok: false, failed: 1 }),
      ]);
    } finally {
      await agent.stop();
    }

    // The agent comes back on replica b (a reconnect that lands elsewhere), and the fix is committed.
    app.git('rm', '-q', 'manifests/bad.yaml');
    const good = app.commit({ 'manifests/cm.yaml': configMapYaml('settings', '2') });
    agent = await runAgent(replicas.b);
    try {
      await untilSync(async () => (await agentOn(replicas.b)).module_status.gitops?.projects[0], good, true, 60_000, 'the good sync in replica b');
      for (const r of [replicas.b, replicas.a]) {
        const resolved = await until(
          async () => (await gitopsAlerts(r)).find((a) => a.labels.file === 'manifests/bad.yaml#1' && a.status === 'resolved'),
          30_000,
          `the alert resolved on replica ${r === replicas.a ? 'a' : 'b'}`,
        );
        const detail = await api(r).alert(resolved.id);
        expect(detail.history.some((h) => h.to === 'resolved' && h.actor === 'gitops')).toBe(true);
        expect((await gitopsAlerts(r)).filter((a) => a.status !== 'resolved')).toEqual([]);
      }

      // Connections are each replica's own: b has the agent, a saw it leave.
      expect((await agentOn(replicas.b)).connection.connected).toBe(true);
      expect((await agentOn(replicas.a)).connection).toMatchObject({ connected: false, since: expect.any(String) });
    } finally {
      await agent.stop();
    }
  }, 300_000);

  it('an agent that disconnected shows as not connected in GET /api/v1/agents', async () => {
    app.git('rm', '-q', '--ignore-unmatch', 'manifests/bad.yaml');
    const good = app.commit({ 'manifests/cm.yaml': configMapYaml('settings', '3') });
    const agent = await runAgent(replicas.b);
    await until(
      async () => {
        const a = await agentOn(replicas.b);
        return a.connection.connected && a.module_status.gitops?.projects[0]?.commit_id === good && a.module_status.gitops?.projects[0].ok ? a : undefined;
      },
      60_000,
      'the agent connected and synced',
    );
    const stoppedAt = Date.now();
    await agent.stop();
    const view = await until(
      async () => {
        const a = await agentOn(replicas.b);
        return a.connection.connected ? undefined : a;
      },
      20_000,
      'the agent shown as not connected',
    );
    expect(Date.parse(view.connection.since!)).toBeGreaterThanOrEqual(stoppedAt - 1000);
    // Its last sync stays on record.
    expect(view.module_status.gitops?.projects[0]).toMatchObject({ project_id: 'group/app', commit_id: good, ok: true });
  }, 120_000);
});
