import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../src/gen/verdict/agent.js';
import { GitOpsClient, type ObjectsToSynchronizeResponse } from '../../src/gen/verdict/gitops.js';
import type { RunningServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { VERSION } from '../../src/shared/version.js';
import { startLocalServer } from '../helpers/config-stream.js';
import { ConfigProject, tempDir, until } from '../helpers/processes.js';

// Which configuration project's config.yaml an agent runs, as the server keeps
// it for what it serves "from the configuration project" (GitOps' entry
// without id, ci_access): what it last sent the agent. That holds only while
// the agent's configuration stream is here, and again when it comes back
// running that commit; an agent that comes back with another commit (sent by
// another replica), or none (it restarted), runs something else, and a stale
// entry would serve it another project's manifests, pruning what it applied.
// Real server, the agent's streams opened as the agent opens them.

const CONFIG = 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n';
const dir = tempDir('verdict-served-project-');
let server: RunningServer;
let gitops: GitOpsClient;
let configs: AgentConfigurationClient;
const open: grpc.ClientReadableStream<unknown>[] = [];

function metadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', VERSION);
  return md;
}

/** The agent's configuration stream, saying it runs `commitId`; open until the test ends. Resolves with the first message. */
function configStream(token: string, commitId: string): Promise<ConfigurationResponse> {
  const call = configs.getConfiguration({ commit_id: commitId, agent_meta: undefined, invalid_in_stream: true }, metadata(token));
  open.push(call);
  return new Promise((resolve, reject) => {
    call.once('data', resolve);
    call.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
}

/** The commit the agent is sent, as a freshly started agent asks; then it leaves (its stream closes). */
async function sentThenLeft(token: string): Promise<string> {
  const call = configs.getConfiguration({ commit_id: '', agent_meta: undefined, invalid_in_stream: true }, metadata(token));
  const first = await new Promise<ConfigurationResponse>((resolve, reject) => {
    call.once('data', resolve);
    call.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
  const closed = new Promise((resolve) => call.on('status', resolve));
  call.cancel();
  await closed;
  // The server's side of it ends once it sees the cancel.
  await new Promise((r) => setTimeout(r, 200));
  return first.commit_id;
}

/** The configuration project's objects (the entry without id): the commit and files of the first batch, or nothing within `quietMs`. */
function objects(token: string, quietMs = 1500): Promise<{ commit?: string; files: string[] }> {
  const call = gitops.getObjectsToSynchronize(
    { project_id: '', commit_id: '', paths: [{ path: { $case: 'glob', value: 'm/**' } }], ref: undefined },
    metadata(token),
  );
  const out: { commit?: string; files: string[] } = { files: [] };
  return new Promise((resolve, reject) => {
    const quiet = setTimeout(() => {
      call.cancel();
      resolve(out);
    }, quietMs);
    call.on('data', (m: ObjectsToSynchronizeResponse) => {
      if (m.message?.$case === 'header') out.commit = m.message.value.commit_id;
      if (m.message?.$case === 'object') out.files.push(m.message.value.source);
    });
    call.on('end', () => {
      clearTimeout(quiet);
      resolve(out);
    });
    call.on('error', (e: grpc.ServiceError) => {
      clearTimeout(quiet);
      if (e.code === grpc.status.CANCELLED) resolve(out);
      else reject(e);
    });
  });
}

/** An agent registered to a first project with an entry without id and m/a.yaml, sent its configuration once; and a second project. */
async function agentAt(name: string, second: Record<string, string>): Promise<{ token: string; firstHead: string; second: ConfigProject; secondHead: string }> {
  const first = new ConfigProject(join(dir, `${name}-first`));
  const firstHead = first.commit({ [`.gitlab/agents/${name}/config.yaml`]: CONFIG, 'm/a.yaml': 'a: 1\n' });
  const other = new ConfigProject(join(dir, `${name}-second`));
  const secondHead = other.commit(second);
  const { token } = server.agents.register(name, first.dir);
  expect(await sentThenLeft(token)).toBe(firstHead);
  return { token, firstHead, second: other, secondHead };
}

beforeAll(async () => {
  server = await startLocalServer(dir, createRootLogger({ level: 'silent' }), { gitops_poll_interval: 100, config_poll_interval: 200 });
  gitops = new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure());
  configs = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure());
});

afterAll(async () => {
  for (const c of open) c.cancel();
  gitops?.close();
  configs?.close();
  await server?.close();
});

describe('the configuration project an agent runs, as the server keeps it', () => {
  it('holds when the agent comes back running the commit it was sent here, after a move to a project without its config.yaml', async () => {
    const a = await agentAt('blip', { 'README.md': 'not configured here yet\n' });
    server.agents.setConfigProject('blip', a.second.dir);
    // Back after a network blip: it still runs the first project's config.yaml, and is told the second has none.
    expect((await configStream(a.token, a.firstHead)).invalid_reason).toMatch(/config\.yaml.*file not found/);
    expect(await objects(a.token)).toEqual({ commit: a.firstHead, files: ['m/a.yaml'] });
  });

  it("is forgotten when the agent comes back running another project's commit (sent by another replica): served from the one it runs", async () => {
    const b = await agentAt('failover', { '.gitlab/agents/failover/config.yaml': CONFIG, 'm/b.yaml': 'b: 2\n' });
    // Moved while it was away, and sent the second project's configuration elsewhere. Its streams come back in no
    // fixed order: the objects may be asked for before its configuration stream is here again.
    server.agents.setConfigProject('failover', b.second.dir);
    expect(await objects(b.token)).toEqual({ commit: b.secondHead, files: ['m/b.yaml'] });
    void configStream(b.token, b.secondHead);
    await until(
      () => server.agents.configStatus('failover')?.commit_id === b.secondHead || undefined,
      10_000,
      'the server finding the agent runs the second project',
    );
    expect(await objects(b.token)).toEqual({ commit: b.secondHead, files: ['m/b.yaml'] });
  });

  it('is forgotten when the agent restarted (it runs no configuration): nothing is served from the old project', async () => {
    const c = await agentAt('restarted', { 'README.md': 'not configured here yet\n' });
    server.agents.setConfigProject('restarted', c.second.dir);
    expect((await configStream(c.token, '')).invalid_reason).toMatch(/config\.yaml.*file not found/);
    // Held (no commit) rather than the first project's manifests for an agent that no longer runs its config.yaml.
    expect(await objects(c.token)).toEqual({ files: [] });
  });

  it('is not taken for another agent registered under the name (the first deleted), whatever the first still has open', async () => {
    const d = await agentAt('reborn', { 'README.md': 'not configured here yet\n' });
    // The first agent is still connected to this server when its row goes (no command deletes an agent: an operator's SQL).
    void configStream(d.token, d.firstHead);
    await until(() => server.streams.configStreamAgents().includes('reborn') || undefined, 10_000, 'the first agent connected');
    server.db.prepare('DELETE FROM agents WHERE name = ?').run('reborn');
    const again = server.agents.register('reborn', d.second.dir).token;
    expect(await objects(again)).toEqual({ files: [] });
  });
});
