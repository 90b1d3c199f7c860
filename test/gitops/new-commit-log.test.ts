import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../../src/server/server.js';
import { type Kube, startKube } from '../helpers/kube.js';
import { ConfigProject, killAll, type LogLine, tempDir, until, verdictRun } from '../helpers/processes.js';
import { apiOf, capturingLogger, configMapYaml as cm, manifestProject, spawnAgent, startGitopsServer, untilSync } from './harness.js';

// `GitOps: new commit` is the server's line for a commit an agent gets for a
// project: once per commit and project, however often the agent asks for it
// again. An agent moved to another configuration project (`verdict agents
// set-project`) whose gitops block differs there restarts its GitOps module,
// whose streams ask again for the commits the agent already has, while the
// configuration project's entry moves on to the new project's commit.

const dir = tempDir('verdict-gitops-new-commit-log-');
const { log, logs } = capturingLogger('info');
let kube: Kube;
let server: RunningServer;
let config: ConfigProject;
let reader = '';
const tokenFile = join(dir, 'agent-token');

/** config.yaml: group/app, and the configuration project's own manifests (the entry without id). */
const agentConfig = (resyncMinutes: number) =>
  [
    'gitops:',
    '  manifest_projects:',
    '    - id: group/app',
    '      default_namespace: moving',
    '      paths: [{glob: "manifests/**/*.yaml"}]',
    `      resync_interval: ${resyncMinutes}m`,
    '    - default_namespace: moving',
    '      paths: [{glob: "own/**/*.yaml"}]',
    '',
  ].join('\n');

beforeAll(async () => {
  kube = await startKube();
  await kube.kubectl(['create', 'namespace', 'moving']);
  let token: string;
  ({ server, token, config } = await startGitopsServer(dir, log, { agentConfig: agentConfig(5) }));
  writeFileSync(tokenFile, `${token}\n`);
  reader = server.tokens.create('log-test', 'read').token;
}, 300_000);

afterAll(async () => {
  await killAll();
  await server?.close();
  await kube?.stop();
});

const newCommits = () => logs.filter((l) => l.msg === 'GitOps: new commit' && l.agent_name === 'edge');
const fetched = (project: string, commit: string) =>
  logs.filter((l) => l.msg === 'GitOps: fetched files' && l.project_id === project && l.commit_id === commit).length;
/** How many times each project's commit was logged as new, as "project@commit". */
const counts = (lines: LogLine[]) => {
  const n: Record<string, number> = {};
  for (const l of lines) n[`${String(l.project_id)}@${String(l.commit_id)}`] = (n[`${String(l.project_id)}@${String(l.commit_id)}`] ?? 0) + 1;
  return n;
};

describe('GitOps: new commit', () => {
  it('is logged once per commit and project when a moved agent asks again for what it has', async () => {
    const app = manifestProject(dir, 'group/app');
    const appHead = app.commit({ 'manifests/cm.yaml': cm('app', '1') });
    const firstHead = config.commit({ 'own/cm.yaml': cm('own', '1') });
    const api = apiOf(server, reader);
    const agent = spawnAgent(server, kube, tokenFile, join(dir, 'agent'));
    await untilSync(() => api.project('group/app'), appHead, true, 60_000, 'group/app synchronized');
    await untilSync(() => api.project(''), firstHead, true, 60_000, 'the configuration project synchronized');

    // The new project: the same manifests, one setting of group/app's entry changed.
    const moved = new ConfigProject(join(dir, 'moved'));
    const movedHead = moved.commit({ '.gitlab/agents/edge/config.yaml': agentConfig(4), 'own/cm.yaml': cm('own', '1') });
    const run = verdictRun(['agents', 'set-project', 'edge', moved.dir, '--data-dir', join(dir, 'server')]);
    expect(run.status, run.stderr).toBe(0);
    await agent.waitForLog((l) => l.msg === 'Restarting module: its configuration changed' && l.mod_name === 'gitops', 30_000, 'the GitOps module restarted');
    await untilSync(() => api.project(''), movedHead, true, 60_000, "the moved configuration project's commit synchronized");
    // The restarted module asked for group/app again: sent again, as it must be (a new worker has no files to resync).
    await until(() => fetched('group/app', appHead) >= 2 || undefined, 30_000, 'group/app sent again');
    await until(() => fetched('(configuration project)', movedHead) >= 1 || undefined, 30_000, "the moved project's commit sent");

    expect(counts(newCommits())).toEqual({
      [`group/app@${appHead}`]: 1,
      [`(configuration project)@${firstHead}`]: 1,
      [`(configuration project)@${movedHead}`]: 1,
    });
    expect(newCommits().every((l) => l.level === 'info')).toBe(true);
  }, 300_000);
});
