import * as grpc from '@grpc/grpc-js';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../src/gen/verdict/agent.js';
import { GitOpsClient, type ObjectsToSynchronizeResponse } from '../../src/gen/verdict/gitops.js';
import type { RunningServer } from '../../src/server/server.js';
import { VERSION } from '../../src/shared/version.js';
import { startLocalServer } from '../helpers/config-stream.js';
import { capturingLogger } from '../helpers/logs.js';
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
const HOLDING = "GitOps: holding the configuration project's objects until the agent is sent a configuration";
const dir = tempDir('verdict-served-project-');
const serverLog = capturingLogger('debug');
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
async function sentThenLeft(name: string, token: string): Promise<string> {
  const call = configs.getConfiguration({ commit_id: '', agent_meta: undefined, invalid_in_stream: true }, metadata(token));
  const first = await new Promise<ConfigurationResponse>((resolve, reject) => {
    call.once('data', resolve);
    call.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
  call.cancel();
  await until(() => !server.streams.configStreamAgents().includes(name) || undefined, 10_000, 'the server seeing the agent leave');
  return first.commit_id;
}

interface Batch {
  commit?: string;
  files: string[];
  /** The server held the stream (it does not know which project's config.yaml the agent runs): cancelled then. */
  held?: true;
}

/**
 * The configuration project's objects (the entry without id), as the agent asks having synchronised `commitId`: the
 * batch the stream sends before it ends, or `held` once the server logs that it holds the stream. `call` gets the
 * stream, for a test that ends it otherwise.
 */
function objects(name: string, token: string, commitId = '', call?: (c: grpc.ClientReadableStream<ObjectsToSynchronizeResponse>) => void): Promise<Batch> {
  const from = serverLog.logs.length;
  const c = gitops.getObjectsToSynchronize(
    { project_id: '', commit_id: commitId, paths: [{ path: { $case: 'glob', value: 'm/**' } }], ref: undefined },
    metadata(token),
  );
  open.push(c);
  call?.(c);
  const out: Batch = { files: [] };
  let done = false;
  const held = until(
    () => done || serverLog.logs.slice(from).some((l) => l.agent_name === name && l.msg === HOLDING) || undefined,
    30_000,
    'the objects or the server holding the stream',
  ).then(() => {
    if (done) return;
    out.held = true;
    c.cancel();
  });
  return new Promise((resolve, reject) => {
    const finish = () => {
      done = true;
      void held.then(() => resolve(out));
    };
    c.on('data', (m: ObjectsToSynchronizeResponse) => {
      if (m.message?.$case === 'header') out.commit = m.message.value.commit_id;
      if (m.message?.$case === 'object') out.files.push(m.message.value.source);
    });
    c.on('end', finish);
    c.on('error', (e: grpc.ServiceError) => {
      if (e.code === grpc.status.CANCELLED) finish();
      else reject(e);
    });
  });
}

/** An agent registered to a first project with an entry without id and m/a.yaml, sent its configuration once; and a second project. */
async function agentAt(
  name: string,
  second: Record<string, string>,
): Promise<{ token: string; first: ConfigProject; firstHead: string; second: ConfigProject; secondHead: string }> {
  const first = new ConfigProject(join(dir, `${name}-first`));
  const firstHead = first.commit({ [`.gitlab/agents/${name}/config.yaml`]: CONFIG, 'm/a.yaml': 'a: 1\n' });
  const other = new ConfigProject(join(dir, `${name}-second`));
  const secondHead = other.commit(second);
  const { token } = server.agents.register(name, first.dir);
  expect(await sentThenLeft(name, token)).toBe(firstHead);
  return { token, first, firstHead, second: other, secondHead };
}

beforeAll(async () => {
  server = await startLocalServer(dir, serverLog.log, { gitops_poll_interval: 100, config_poll_interval: 200 });
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
    expect(await objects('blip', a.token)).toEqual({ commit: a.firstHead, files: ['m/a.yaml'] });
  });

  it("is forgotten when the agent comes back running another project's commit (sent by another replica): held", async () => {
    const b = await agentAt('failover', { '.gitlab/agents/failover/config.yaml': CONFIG, 'm/b.yaml': 'b: 2\n' });
    // Moved while it was away, and sent the second project's configuration elsewhere; since then the second project
    // lost its config.yaml, so this server sends it nothing, and cannot know what it runs but from the agent.
    server.agents.setConfigProject('failover', b.second.dir);
    b.second.git('rm', '-q', '.gitlab/agents/failover/config.yaml');
    b.second.commit({ 'README.md': 'moved on\n' });
    expect((await configStream(b.token, b.secondHead)).invalid_reason).toMatch(/config\.yaml.*file not found/);
    // Not the first project's manifests, which the agent no longer runs.
    expect(await objects('failover', b.token)).toEqual({ files: [], held: true });
  });

  it('is forgotten when the agent restarted (it runs no configuration): nothing is served from the old project', async () => {
    const c = await agentAt('restarted', { 'README.md': 'not configured here yet\n' });
    server.agents.setConfigProject('restarted', c.second.dir);
    expect((await configStream(c.token, '')).invalid_reason).toMatch(/config\.yaml.*file not found/);
    // Held (no commit) rather than the first project's manifests for an agent that no longer runs its config.yaml.
    expect(await objects('restarted', c.token)).toEqual({ files: [], held: true });
  });

  it('is not taken for another agent registered under the name (the first deleted), whatever the first still has open', async () => {
    const d = await agentAt('reborn', { 'README.md': 'not configured here yet\n' });
    // The first agent is still connected to this server when its row goes (no command deletes an agent: an operator's SQL).
    void configStream(d.token, d.firstHead);
    await until(() => server.streams.configStreamAgents().includes('reborn') || undefined, 10_000, 'the first agent connected');
    server.db.prepare('DELETE FROM agents WHERE name = ?').run('reborn');
    const again = server.agents.register('reborn', d.second.dir).token;
    expect(await objects('reborn', again)).toEqual({ files: [], held: true });
  });
});

describe('the configuration project an agent was moved away from', () => {
  it('is served at the commit the agent runs: what is pushed there after the move is neither applied nor pruned', async () => {
    const e = await agentAt('frozen', { 'README.md': 'not configured here yet\n' });
    server.agents.setConfigProject('frozen', e.second.dir);
    expect((await configStream(e.token, e.firstHead)).invalid_reason).toMatch(/config\.yaml.*file not found/);
    // The old project goes on without the agent: its manifest deleted, another added.
    e.first.git('rm', '-q', 'm/a.yaml');
    const later = e.first.commit({ 'm/c.yaml': 'c: 3\n' });
    expect(later).not.toBe(e.firstHead);
    expect(await objects('frozen', e.token)).toEqual({ commit: e.firstHead, files: ['m/a.yaml'] });

    // The agent, synchronised at that commit, waits; the new project's configuration reaching it ends the stream,
    // and it asks again for the new project's manifests.
    let waiting: grpc.ClientReadableStream<ObjectsToSynchronizeResponse> | undefined;
    const pending = objects('frozen', e.token, e.firstHead, (c) => (waiting = c));
    await until(
      () => server.streams.following('frozen').some((f) => f.project === e.first.dir && f.commit === e.firstHead) || undefined,
      10_000,
      'the stream served at the commit the agent runs',
    );
    const configured = e.second.commit({ '.gitlab/agents/frozen/config.yaml': CONFIG, 'm/b.yaml': 'b: 2\n' });
    expect(await pending).toEqual({ files: [] });
    expect(waiting).toBeDefined();
    expect(await objects('frozen', e.token, e.firstHead)).toEqual({ commit: configured, files: ['m/b.yaml'] });
  });
});

describe('a GitOps stream that arrives together with the configuration stream', () => {
  // After a blip both come back at once, the GitOps one first. The server does not know yet what the agent runs and
  // holds the GitOps stream; the configuration stream, opened while the GitOps one reads git, tells it: the held
  // stream must end then (the agent asks again), not stay held with nothing to end it.
  for (const n of [1, 2, 3])
    it(`is not held forever (${n})`, async () => {
      const name = `race${n}`;
      const r = await agentAt(name, { 'README.md': 'not configured here yet\n' });
      server.agents.setConfigProject(name, r.second.dir);
      // Both sent in one tick over one connection: the server takes the GitOps call first, and the configuration
      // call while the GitOps one waits for git.
      const obj = new Promise<Batch>((resolve, reject) => {
        const c = gitops.getObjectsToSynchronize(
          { project_id: '', commit_id: '', paths: [{ path: { $case: 'glob', value: 'm/**' } }], ref: undefined },
          metadata(r.token),
        );
        open.push(c);
        const out: Batch = { files: [] };
        c.on('data', (m: ObjectsToSynchronizeResponse) => {
          if (m.message?.$case === 'header') out.commit = m.message.value.commit_id;
          if (m.message?.$case === 'object') out.files.push(m.message.value.source);
        });
        c.on('end', () => resolve(out));
        c.on('error', reject);
      });
      const cfg = configStream(r.token, r.firstHead);
      expect((await cfg).invalid_reason).toMatch(/file not found/);
      // Ended cleanly (or served at once, had the configuration stream come first); never left waiting.
      const first = await Promise.race([obj, new Promise<'held'>((resolve) => setTimeout(() => resolve('held'), 10_000))]);
      expect(first === 'held' ? first : 'ended').toBe('ended');
      expect(await objects(name, r.token)).toEqual({ commit: r.firstHead, files: ['m/a.yaml'] });
    });
});
