import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GitOpsClient, type SyncReport } from '../../src/gen/verdict/gitops.js';
import type { RunningServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { VERSION } from '../../src/shared/version.js';
import { agentConfigStream } from '../helpers/config-stream.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';
import { AGENT, apiOf, capturingLogger, startGitopsServer } from './harness.js';

// An agent moved to another configuration project (`verdict agents set-project`,
// PATCH /api/v1/admin/agents/:agent) runs the old project's commit until the
// new project's configuration is sent, while the registry names the new project
// at once. The check for projects removed from its configuration reads the
// commit last sent: a move is no failure of it, and a project the new
// config.yaml leaves out is still dropped once that configuration is sent.
// Real server, the agent's own configuration stream, ReportSync as it sends it.

const root = tempDir('verdict-gitops-moved-removed-');
const { log, logs } = capturingLogger('info');
const started: { server: RunningServer; gitops: GitOpsClient; stream?: Awaited<ReturnType<typeof agentConfigStream>> }[] = [];

const configYaml = (...entries: string[]) => `gitops:\n  manifest_projects:\n${entries.map((e) => `    - ${e}\n`).join('')}`;

function md(token: string): grpc.Metadata {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${token}`);
  m.set('verdict-version', VERSION);
  return m;
}

const synced = (project_id: string, commit_id: string): SyncReport => ({
  project_id,
  commit_id,
  ok: true,
  error: '',
  applied: 1,
  changed: 0,
  unchanged: 1,
  pruned: 0,
  failed: 0,
  duration_ms: 5,
  drift_corrected: false,
  objects: [],
  finished_at: new Date().toISOString(),
});

const report = (gitops: GitOpsClient, token: string, r: SyncReport) =>
  new Promise<void>((resolve, reject) => gitops.reportSync(r, md(token), (err) => (err ? reject(err) : resolve())));

afterAll(async () => {
  for (const s of started) {
    await s.stream?.close();
    s.gitops.close();
    await s.server.close();
  }
});

/**
 * Moves the agent, synchronised with its configuration project's entry and group/app, to a project whose config.yaml
 * leaves group/app out, viewing it until the new configuration is sent; returns the projects of each view. With
 * `checkedBefore`, the configuration the agent runs was checked before the move (the sweep, a report or a view after
 * it was sent); without, the first check comes after the move.
 */
async function move(name: string, checkedBefore: boolean): Promise<{ seen: string[][]; after: string[]; errors: string[] }> {
  const dir = join(root, name);
  const from = logs.length;
  const { server, token } = await startGitopsServer(dir, log, {
    agentConfig: configYaml('{}', 'id: group/app'),
    // No sweep without: the checks are the views below.
    settings: { config_poll_interval: 100, gitops_poll_interval: checkedBefore ? 100 : 600_000 },
  });
  const s: (typeof started)[number] = { server, gitops: new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure()) };
  started.push(s);
  const api = apiOf(server, server.tokens.create('reader', 'read').token);
  const projects = async () => (await api.agent()).module_status.gitops?.projects.map((p) => p.project_id) ?? [];
  const connect = async () => {
    s.stream = await agentConfigStream(server, token, createRootLogger({ level: 'silent' }), 60_000);
    return until(() => s.stream?.updates[0]?.commitId, 10_000, 'the first configuration');
  };
  // Reported before its configuration stream is here, a report's check finds no configuration to check.
  const oldHead = checkedBefore ? await connect() : 'c1';
  await report(s.gitops, token, synced('', oldHead));
  await report(s.gitops, token, synced('group/app', 'a1'));
  if (checkedBefore) expect(await projects()).toEqual(['', 'group/app']);
  else await connect();

  // The new project lists the configuration project's own entry only: group/app leaves the agent's configuration.
  const moved = new ConfigProject(join(dir, 'moved'));
  const movedHead = moved.commit({ [`.gitlab/agents/${AGENT}/config.yaml`]: configYaml('{}') });
  server.agents.setConfigProject(AGENT, moved.dir);
  // Until the server notices the move and sends the new configuration, every view of the agent checks again (as
  // the sweep and each report do), against the registry's new project and the old project's commit.
  const seen: string[][] = [];
  await until(
    async () => {
      seen.push(await projects());
      return server.agents.configStatus(AGENT)?.commit_id === movedHead || undefined;
    },
    10_000,
    "the new project's configuration sent",
  );
  await until(() => s.stream?.updates.at(-1)?.commitId === movedHead || undefined, 10_000, 'the agent running the new configuration');
  const after = await until(
    async () => {
      const p = await projects();
      return p.includes('group/app') ? undefined : p;
    },
    10_000,
    'group/app dropped',
  );
  const errors = logs
    .slice(from)
    .filter((l) => l.level === 'error')
    .map((l) => `${l.msg}: ${String(l.error)}`);
  return { seen: seen.slice(0, -1), after, errors };
}

describe('projects removed from the configuration, when the agent moves to another configuration project', () => {
  it("logs no error while the agent still runs the old project's commit, and drops what the new one leaves out once it is sent", async () => {
    const { seen, after, errors } = await move('checked', true);
    // The agent ran the old project's config.yaml meanwhile, which lists group/app.
    expect(seen.every((p) => p.includes('group/app'))).toBe(true);
    expect(after).toEqual(['']);
    expect(errors).toEqual([]);
  });

  it('logs no error when the first check of the commit the agent runs comes after the move', async () => {
    const { after, errors } = await move('unchecked', false);
    expect(after).toEqual(['']);
    expect(errors).toEqual([]);
  });
});
