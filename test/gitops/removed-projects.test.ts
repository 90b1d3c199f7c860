import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../src/gen/verdict/agent.js';
import { GitOpsClient, type SyncReport } from '../../src/gen/verdict/gitops.js';
import type { RunningServer } from '../../src/server/server.js';
import { VERSION } from '../../src/shared/version.js';
import { type ConfigProject, tempDir, until } from '../helpers/processes.js';
import { AGENT, apiOf, capturingLogger, startGitopsServer } from './harness.js';

// A project dropped from an agent's config.yaml gets no sync report again: the
// server drops its sync status once the configuration it sends the agent no
// longer lists it, and resolves its gitops alerts. The agent's side is what a
// real agent sends: a configuration stream, and ReportSync calls.

const dir = tempDir('verdict-gitops-removed-');
const { log, logs } = capturingLogger('info');
let server: RunningServer;
let config: ConfigProject;
let token: string;
let configCall: grpc.ClientReadableStream<ConfigurationResponse>;
const received: string[] = [];
let gitops: GitOpsClient;

const configYaml = (...entries: string[]) =>
  entries.length ? `gitops:\n  manifest_projects:\n${entries.map((e) => `    - ${e}\n`).join('')}` : 'observability: {}\n';

function md(): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  m.set('verdict-version', VERSION);
  return m;
}

const failedSync = (project_id: string, commit_id: string): SyncReport => ({
  project_id,
  commit_id,
  ok: false,
  error: '',
  applied: 1,
  changed: 0,
  unchanged: 0,
  pruned: 0,
  failed: 1,
  duration_ms: 5,
  drift_corrected: false,
  objects: [{ object: '/ConfigMap shop/web', source: 'm.yaml#1', action: 'failed', reason: 'Forbidden' }],
  finished_at: new Date().toISOString(),
});

const report = (r: SyncReport) => new Promise<void>((resolve, reject) => gitops.reportSync(r, md(), (err) => (err ? reject(err) : resolve())));

beforeAll(async () => {
  ({ server, config, token } = await startGitopsServer(dir, log, { agentConfig: configYaml('{}', 'id: group/app'), settings: { config_poll_interval: 100 } }));
  // The agent's configuration stream: the server records each commit it sends (the agent registry's config status).
  configCall = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure()).getConfiguration(
    { commit_id: '', agent_meta: undefined, invalid_in_stream: false },
    md(),
  );
  configCall.on('data', (r: ConfigurationResponse) => received.push(r.commit_id));
  configCall.on('error', () => {});
  gitops = new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure());
  await until(() => received.length === 1, 10_000, 'first configuration');
});

afterAll(async () => {
  configCall?.cancel();
  gitops?.close();
  await server?.close();
});

describe('sync status of projects removed from the configuration', () => {
  it("drops the project's status and resolves its alerts once the configuration sent to the agent no longer lists it; listed projects keep theirs", async () => {
    const api = apiOf(server, server.tokens.create('reader', 'read').token);
    const projects = async () => (await api.agent()).module_status.gitops?.projects.map((p) => p.project_id) ?? [];
    const openAlert = async (project: string) => (await api.gitopsAlerts()).find((a) => a.labels.project === project && a.status === 'triggered');
    await report(failedSync('', 'c1'));
    await report(failedSync('group/app', 'a1'));
    expect(await projects()).toEqual(['', 'group/app']);
    const own = await until(() => openAlert('(configuration project)'), 10_000, "the configuration project's alert");
    const app = await until(() => openAlert('group/app'), 10_000, "group/app's alert");

    // The entry without id (the configuration project) leaves config.yaml.
    const second = config.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: configYaml('id: group/app') });
    await until(() => received.includes(second), 10_000, 'second configuration sent');
    await until(async () => !(await projects()).includes('') || undefined, 10_000, 'the removed project gone from GET /api/v1/agents/edge');
    expect(await projects()).toEqual(['group/app']);
    expect((await api.listed())?.module_status.gitops?.projects.map((p) => p.project_id)).toEqual(['group/app']);
    const resolved = await until(async () => (await api.gitopsAlerts()).find((a) => a.id === own.id && a.status === 'resolved'), 10_000, 'its alert resolved');
    expect((await api.alert(resolved.id)).history.some((h) => h.to === 'resolved' && h.actor === 'gitops')).toBe(true);
    expect(await openAlert('group/app')).toMatchObject({ id: app.id });
    expect(
      logs.some(
        (l) =>
          l.msg === "GitOps: project removed from the agent's configuration; dropped its sync status and resolved its alerts" &&
          l.project_id === '(configuration project)',
      ),
    ).toBe(true);

    // A late report on the removed project (a reporter retrying before the agent's module restarted) does not bring it back.
    await report(failedSync('', 'c2'));
    await until(async () => !(await projects()).includes('') || undefined, 10_000, 'the late report dropped');

    // No gitops block at all: nothing is listed, and nobody needs to open the Agents view for the alerts to resolve.
    const third = config.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: configYaml() });
    await until(() => received.includes(third), 10_000, 'third configuration sent');
    await until(
      async () => (await api.gitopsAlerts()).find((a) => a.id === app.id && a.status === 'resolved'),
      10_000,
      "group/app's alert resolved by the sweep",
    );
    expect(await projects()).toEqual([]);
  });
});
