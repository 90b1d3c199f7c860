import * as grpc from '@grpc/grpc-js';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AgentConfigurationClient, type ConfigurationResponse } from '../../src/gen/verdict/agent.js';
import { GitOpsClient, type ObjectsToSynchronizeRequest, type ObjectsToSynchronizeResponse } from '../../src/gen/verdict/gitops.js';
import { startServer, type RunningServer } from '../../src/server/server.js';
import type { Agent } from '../../src/server/feed/web/api-types.js';
import { SERVER_DEFAULTS } from '../../src/shared/config/server-config.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { VERSION } from '../../src/shared/version.js';
import { ConfigProject, gitCalls, tempDir, until } from '../helpers/processes.js';

// The server side of GitOps through a real server and a real gRPC client:
// which files of which project at which commit reach the agent, in the
// original's header / objects / trailer contract, with its limits and errors.

const POLL_MS = 100;
const dir = tempDir('verdict-gitops-server-');
const projectsDir = join(dir, 'projects');
const logs: { msg: string; [k: string]: unknown }[] = [];
let server: RunningServer;
let token: string;
let client: GitOpsClient;
let config: ConfigProject;
let app: ConfigProject;

interface Batch {
  header?: { commit_id: string; project_id: string };
  objects: { source: string; data: Buffer }[];
  trailer: boolean;
  ended: boolean;
  error?: grpc.ServiceError;
}

function metadata(t = token): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${t}`);
  md.set('verdict-version', VERSION);
  return md;
}

/** Opens the stream and collects what arrives; settles when it ends, fails, after `quietMs`, or once `stop` settles. */
function fetchObjects(req: Partial<ObjectsToSynchronizeRequest>, opts: { quietMs?: number; md?: grpc.Metadata; stop?: Promise<unknown> } = {}): Promise<Batch> {
  const batch: Batch = { objects: [], trailer: false, ended: false };
  const call = client.getObjectsToSynchronize({ project_id: '', commit_id: '', paths: [], ref: undefined, ...req }, opts.md ?? metadata());
  return new Promise((resolve) => {
    void opts.stop?.finally(() => {
      resolve(structuredClone(batch));
      call.cancel();
    });
    // After a cancel the client still reports the stream's end: what counts is what came before.
    const quiet = opts.quietMs
      ? setTimeout(() => {
          resolve(structuredClone(batch));
          call.cancel();
        }, opts.quietMs)
      : undefined;
    call.on('data', (m: ObjectsToSynchronizeResponse) => {
      if (m.message?.$case === 'header') batch.header = m.message.value;
      if (m.message?.$case === 'object') batch.objects.push(m.message.value);
      if (m.message?.$case === 'trailer') batch.trailer = true;
    });
    call.on('end', () => {
      clearTimeout(quiet);
      batch.ended = true;
      resolve(batch);
    });
    call.on('error', (e: grpc.ServiceError) => {
      clearTimeout(quiet);
      if (e.code !== grpc.status.CANCELLED) batch.error = e;
      resolve(batch);
    });
  });
}

/** The agent's configuration, asked for as the agent asks: the commit the server sends first. */
function configurationSent(md: grpc.Metadata): Promise<string> {
  const call = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure()).getConfiguration(
    { commit_id: '', agent_meta: undefined, invalid_in_stream: false },
    md,
  );
  return new Promise((resolve, reject) => {
    call.on('data', (r: ConfigurationResponse) => {
      resolve(r.commit_id);
      call.cancel();
    });
    call.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
}

/** Files as the agent reassembles them: consecutive chunks of one source joined. */
function files(b: Batch): Record<string, string> {
  const out: Record<string, Buffer[]> = {};
  for (const o of b.objects) (out[o.source] ??= []).push(o.data);
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Buffer.concat(v).toString('utf8')]));
}

const glob = (g: string) => ({ path: { $case: 'glob' as const, value: g } });

beforeAll(async () => {
  config = new ConfigProject(join(dir, 'config-project'));
  config.commit({
    '.gitlab/agents/edge/config.yaml': 'gitops:\n  manifest_projects:\n    - paths: [{glob: "manifests/**"}]\n',
    'manifests/cm.yaml': 'kind: ConfigMap\n',
  });
  mkdirSync(join(projectsDir, 'group'), { recursive: true });
  app = new ConfigProject(join(projectsDir, 'group', 'app.git'));
  app.commit({
    'deploy/a.yaml': 'a: 1\n',
    'deploy/b.json': '{"b": 2}\n',
    'deploy/notes.txt': 'not a manifest\n',
    '.hidden/c.yaml': 'c: 3\n',
    'deploy/.secret/d.yaml': 'd: 4\n',
    'top.yml': 'top: true\n',
  });
  symlinkSync(join(projectsDir, 'group', 'app.git'), join(projectsDir, '42'));
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line) as { msg: string });
      cb();
    },
  });
  server = await startServer(
    {
      ...SERVER_DEFAULTS,
      data_dir: join(dir, 'server'),
      http_addr: '127.0.0.1:0',
      grpc_addr: '127.0.0.1:0',
      projects_dir: projectsDir,
      gitops_poll_interval: POLL_MS,
      // A configuration project asked for before its config.yaml is committed is read again soon after.
      config_poll_interval: 200,
    },
    createRootLogger({ level: 'info', destination: sink }),
  );
  token = server.agents.register('edge', config.dir).token;
  client = new GitOpsClient(server.grpcAddress, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await server?.close();
});

describe('GetObjectsToSynchronize', () => {
  it("sends a project path's files at the head of its default branch: header, objects, trailer, then ends", async () => {
    const b = await fetchObjects({ project_id: 'group/app' });
    expect(b.error).toBeUndefined();
    expect(b.header).toEqual({ commit_id: app.git('rev-parse', 'HEAD'), project_id: 'group/app' });
    // The default glob takes .yaml, .yml and .json files, never those under a dot-directory.
    expect(files(b)).toEqual({ 'deploy/a.yaml': 'a: 1\n', 'deploy/b.json': '{"b": 2}\n', 'top.yml': 'top: true\n' });
    expect(b.trailer).toBe(true);
    expect(b.ended).toBe(true);
    expect(logs.some((l) => l.msg === 'GitOps: new commit' && l.agent_name === 'edge' && l.project_id === 'group/app')).toBe(true);
    expect(logs.find((l) => l.msg === 'GitOps: fetched files' && l.project_id === 'group/app')).toMatchObject({ files_visited: 3, files_sent: 3 });
  });

  it('takes a manifest project without id as the configuration project, and a numeric id as the symlink of that name', async () => {
    const own = await fetchObjects({ paths: [glob('/manifests/**')] });
    expect(own.header?.commit_id).toBe(config.git('rev-parse', 'HEAD'));
    expect(files(own)).toEqual({ 'manifests/cm.yaml': 'kind: ConfigMap\n' });
    const numeric = await fetchObjects({ project_id: '42', paths: [glob('deploy/*.yaml')] });
    expect(numeric.header?.project_id).toBe('42');
    expect(Object.keys(files(numeric))).toEqual(['deploy/a.yaml']);
  });

  it('refuses unknown projects, and ids that would leave projects_dir, with NOT_FOUND', async () => {
    for (const id of ['group/missing', '../config-project', '/etc', '7']) {
      const b = await fetchObjects({ project_id: id });
      expect(b.error?.code, id).toBe(grpc.status.NOT_FOUND);
      expect(b.header).toBeUndefined();
    }
    expect((await fetchObjects({ project_id: '7' })).error?.details).toContain('numeric ids resolve to');
  });

  it("sends nothing while the ref stays at the agent's commit, and the new commit once it moves", async () => {
    const head = app.git('rev-parse', 'HEAD');
    const quiet = await fetchObjects({ project_id: 'group/app', commit_id: head }, { quietMs: 4 * POLL_MS });
    expect([quiet.header, quiet.objects, quiet.trailer, quiet.ended]).toEqual([undefined, [], false, false]);
    const waiting = fetchObjects({ project_id: 'group/app', commit_id: head, paths: [glob('deploy/a.yaml')] });
    await new Promise((r) => setTimeout(r, 2 * POLL_MS));
    const next = app.commit({ 'deploy/a.yaml': 'a: 2\n' });
    const b = await waiting;
    expect(b.header?.commit_id).toBe(next);
    expect(files(b)).toEqual({ 'deploy/a.yaml': 'a: 2\n' });
  });

  it('follows a branch or a tag, and sends a pinned commit once', async () => {
    const first = app.git('rev-parse', 'HEAD');
    app.git('tag', 'v1');
    app.git('checkout', '-q', '-b', 'staging');
    const staging = app.commit({ 'deploy/a.yaml': 'a: staging\n' });
    app.git('checkout', '-q', 'main');
    const paths = [glob('deploy/a.yaml')];
    expect(files(await fetchObjects({ project_id: 'group/app', paths, ref: { ref: { $case: 'branch', value: 'staging' } } }))).toEqual({
      'deploy/a.yaml': 'a: staging\n',
    });
    expect((await fetchObjects({ project_id: 'group/app', paths, ref: { ref: { $case: 'tag', value: 'v1' } } })).header?.commit_id).toBe(first);
    const pinned = await fetchObjects({ project_id: 'group/app', paths, ref: { ref: { $case: 'commit', value: staging } } });
    expect(pinned.header?.commit_id).toBe(staging);
    const again = await fetchObjects(
      { project_id: 'group/app', commit_id: staging, paths, ref: { ref: { $case: 'commit', value: staging } } },
      { quietMs: 3 * POLL_MS },
    );
    expect(again.header).toBeUndefined();
    const missing = await fetchObjects({ project_id: 'group/app', ref: { ref: { $case: 'branch', value: 'nope' } } });
    expect(missing.error?.code).toBe(grpc.status.NOT_FOUND);
    expect(missing.error?.details).toBe('GitOps: repository poll failed: NotFound: file/directory/ref not found: branch nope of project group/app');
    const option = await fetchObjects({ project_id: 'group/app', ref: { ref: { $case: 'branch', value: '--output=/tmp/x' } } });
    expect(option.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('chunks a file over 128 KiB into consecutive objects of the same source', async () => {
    const big = 'x'.repeat(300 * 1024);
    app.commit({ 'big/big.yaml': big });
    const b = await fetchObjects({ project_id: 'group/app', paths: [glob('big/*.yaml')] });
    expect(b.objects.map((o) => [o.source, o.data.length])).toEqual([
      ['big/big.yaml', 128 * 1024],
      ['big/big.yaml', 128 * 1024],
      ['big/big.yaml', 44 * 1024],
    ]);
    expect(files(b)['big/big.yaml']).toBe(big);
  });

  it("enforces the original's limits with its messages (FAILED_PRECONDITION after the header)", async () => {
    const failed = async (req: Partial<ObjectsToSynchronizeRequest>) => {
      const b = await fetchObjects({ project_id: 'group/app', ...req });
      expect(b.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
      return b.error!.details;
    };
    app.commit({ 'huge/huge.yaml': 'y'.repeat(5 * 1024 * 1024 + 1) });
    expect(await failed({ paths: [glob('huge/*')] })).toBe(
      'GitOps: failed to get objects to synchronize: manifest file: FileTooBig: file is too big: huge/huge.yaml (5242881 bytes, over the 5242880-byte limit per file)',
    );
    const fives: Record<string, string> = {};
    for (let i = 0; i < 5; i++) fives[`total/f${i}.yaml`] = 'z'.repeat(4.5 * 1024 * 1024);
    app.commit(fives);
    expect(await failed({ paths: [glob('total/*')] })).toContain('manifest file: FileTooBig: file is too big: total/f4.yaml');
    expect(await failed({ paths: [glob('deploy/*.yaml'), glob('deploy/a.*')] })).toBe(
      'GitOps: failed to get objects to synchronize: manifest file: path visited more than once: deploy/a.yaml',
    );
    const many: Record<string, string> = {};
    for (let i = 0; i <= 1000; i++) many[`many/m${i}.yaml`] = `m: ${i}\n`;
    app.commit(many);
    expect(await failed({ paths: [glob('many/*.yaml')] })).toBe(
      'GitOps: failed to get objects to synchronize: manifest file: maximum number of files limit reached: 1000',
    );
    expect(await failed({ paths: [glob('deploy/{a,b')] })).toContain('manifest file: glob deploy/{a,b match failed: syntax error in pattern');
    const tooMany = await fetchObjects({ project_id: 'group/app', paths: Array.from({ length: 101 }, (_, i) => glob(`p${i}/*.yaml`)) });
    expect(tooMany.error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('admits agents as the rest of the agent API does', async () => {
    const b = await fetchObjects({ project_id: 'group/app' }, { md: metadata('not-a-token') });
    expect(b.error?.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  // Each entry of config.yaml has its own worker and inventory: two that name one repository would fight over its objects.
  it('refuses an entry naming a repository an earlier entry names (the configuration project by its path, a symlink), saying which', async () => {
    mkdirSync(join(projectsDir, 'infra'), { recursive: true });
    symlinkSync(config.dir, join(projectsDir, 'infra', 'agents'));
    config.commit({
      '.gitlab/agents/twin/config.yaml': 'gitops:\n  manifest_projects:\n    - {}\n    - id: group/app\n    - id: infra/agents\n    - id: 42\n',
    });
    const twin = server.agents.register('twin', config.dir).token;
    const as = (project_id: string) => fetchObjects({ project_id, paths: [glob('deploy/*.yaml')] }, { md: metadata(twin) });
    const byPath = await as('infra/agents');
    expect(byPath.error?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(byPath.error?.details).toBe(
      'GitOps: .gitlab/agents/twin/config.yaml: gitops.manifest_projects[2] (id: infra/agents) names the repository gitops.manifest_projects[0] (no id: the configuration project) already synchronises; ' +
        "two entries would apply its objects under two inventories, each refusing or pruning the other's: remove one of the two (keep the one whose inventory owns the objects in the cluster)",
    );
    expect(byPath.header).toBeUndefined();
    expect((await as('42')).error?.details).toContain(
      'gitops.manifest_projects[3] (id: 42) names the repository gitops.manifest_projects[1] (id: group/app) already synchronises',
    );
    // The first entry of each repository is served; so is every project of an agent whose config lists each once (edge, above).
    expect((await as('')).header?.commit_id).toBe(config.git('rev-parse', 'HEAD'));
    expect((await as('group/app')).header?.project_id).toBe('group/app');
  });

  it('ends a stream served from the configuration project when the agent moves to another, so the agent asks the new one', async () => {
    const first = new ConfigProject(join(dir, 'mover-first'));
    const firstHead = first.commit({
      '.gitlab/agents/mover/config.yaml': 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n',
      'm/a.yaml': 'a: 1\n',
    });
    const second = new ConfigProject(join(dir, 'mover-second'));
    const secondHead = second.commit({
      '.gitlab/agents/mover/config.yaml': 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n',
      'm/b.yaml': 'b: 2\n',
    });
    const moverToken = server.agents.register('mover', first.dir).token;
    const admin = server.tokens.create('ops-mover', 'admin').token;
    // A stream of another project, up to date: it must outlive the move (looked at once the agent asked again, below).
    let askedAgain!: (b: Batch) => void;
    const again = new Promise<Batch>((resolve) => (askedAgain = resolve));
    const other = fetchObjects({ project_id: 'group/app', commit_id: app.git('rev-parse', 'HEAD') }, { md: metadata(moverToken), stop: again });
    // Up to date with the first project: the stream polls and sends nothing, until the move ends it.
    const waiting = fetchObjects({ commit_id: firstHead, paths: [glob('m/**')] }, { md: metadata(moverToken) });
    // Moved only once the server serves it from the first project (it follows the move from then on).
    await until(() => server.streams.configStreamAgents().includes('mover'), 10_000, "the server following mover's stream");
    const res = await fetch(`http://${server.httpAddress}/api/v1/admin/agents/mover`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config_project: second.dir }),
    });
    expect(res.status).toBe(200);
    // As the agent does once its configuration stream ends: it asks for, and runs, the new project's config.yaml.
    await configurationSent(metadata(moverToken));
    const ended = await waiting;
    expect([ended.error, ended.header, ended.trailer, ended.ended]).toEqual([undefined, undefined, false, true]);
    askedAgain(await fetchObjects({ commit_id: firstHead, paths: [glob('m/**')] }, { md: metadata(moverToken) }));
    expect((await again).header?.commit_id).toBe(secondHead);
    expect(files(await again)).toEqual({ 'm/b.yaml': 'b: 2\n' });
    // A stream of another project is not the configuration project's: it went on (its end, had the move ended it, came
    // on the same connection before the answer to the request above).
    expect((await other).ended).toBe(false);
  });

  it('serves the configuration project whose config.yaml the agent runs: a move to one without it changes nothing until it has one', async () => {
    const cfg = 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n';
    const first = new ConfigProject(join(dir, 'careful-first'));
    const firstHead = first.commit({ '.gitlab/agents/careful/config.yaml': cfg, 'm/a.yaml': 'a: 1\n' });
    const second = new ConfigProject(join(dir, 'careful-second'));
    second.commit({ 'README.md': 'the agent is not configured here yet\n' });
    const token = server.agents.register('careful', first.dir).token;
    const admin = server.tokens.create('ops-careful', 'admin').token;
    expect(await configurationSent(metadata(token))).toBe(firstHead);
    const res = await fetch(`http://${server.httpAddress}/api/v1/admin/agents/careful`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ config_project: second.dir }),
    });
    expect(res.status).toBe(200);
    // As the agent does after the move ended its configuration stream: it asks again, saying it runs the first commit.
    const back = new AgentConfigurationClient(server.grpcAddress, grpc.credentials.createInsecure()).getConfiguration(
      { commit_id: firstHead, agent_meta: undefined, invalid_in_stream: true },
      metadata(token),
    );
    back.on('error', () => undefined);
    await until(() => server.streams.configStreamAgents().includes('careful') || undefined, 10_000, "careful's configuration stream");
    // The agent still runs the first project's config.yaml: its manifests come from there, not from a project whose
    // empty commit would have it prune everything.
    const still = await fetchObjects({ paths: [glob('m/**')] }, { md: metadata(token) });
    back.cancel();
    expect([still.header?.commit_id, files(still)]).toEqual([firstHead, { 'm/a.yaml': 'a: 1\n' }]);
    // Once the second project has its config.yaml and the agent was sent it, they come from the second.
    const secondHead = second.commit({ '.gitlab/agents/careful/config.yaml': cfg, 'm/b.yaml': 'b: 2\n' });
    // Read again within the poll interval: the server may refuse the commit without it once more until then.
    expect(await until(() => configurationSent(metadata(token)).catch(() => undefined), 10_000, "the second project's configuration")).toBe(secondHead);
    const moved = await fetchObjects({ paths: [glob('m/**')] }, { md: metadata(token) });
    expect([moved.header?.commit_id, files(moved)]).toEqual([secondHead, { 'm/b.yaml': 'b: 2\n' }]);
  });

  it("waits, when it does not know which project's config.yaml the agent runs and the registered one has none, until its configuration is sent", async () => {
    // As after a restart of the server, or a failover to another replica: nothing was sent to the agent here yet.
    const cfg = 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n';
    const first = new ConfigProject(join(dir, 'restarted-first'));
    first.commit({ '.gitlab/agents/restarted/config.yaml': cfg, 'm/a.yaml': 'a: 1\n' });
    const second = new ConfigProject(join(dir, 'restarted-second'));
    second.commit({ 'README.md': 'the agent is not configured here yet\n' });
    const token = server.agents.register('restarted', first.dir).token;
    server.agents.setConfigProject('restarted', second.dir);
    const waiting = fetchObjects({ paths: [glob('m/**')] }, { md: metadata(token) });
    await until(() => server.streams.configStreamAgents().includes('restarted') || undefined, 10_000, 'the server holding the stream');
    const secondHead = second.commit({ '.gitlab/agents/restarted/config.yaml': cfg, 'm/b.yaml': 'b: 2\n' });
    expect(await configurationSent(metadata(token))).toBe(secondHead);
    // Ended without a commit (the agent asks again), never served from the commit without the agent's config.yaml.
    const ended = await waiting;
    expect([ended.error, ended.header, ended.ended]).toEqual([undefined, undefined, true]);
    const served = await fetchObjects({ paths: [glob('m/**')] }, { md: metadata(token) });
    expect([served.header?.commit_id, files(served)]).toEqual([secondHead, { 'm/b.yaml': 'b: 2\n' }]);
  });

  // A stream blocked on an agent that stopped reading (its HTTP/2 window full) never drains: a move, or a revoked token,
  // must still finish the server's side of it, or it stays tracked and is ended again at every later registry change.
  it('finishes a stream blocked on an agent that stopped reading when the agent moves, or its token is revoked', async () => {
    // 8 MiB (the limit per file is 5 MiB), far past what HTTP/2's windows and the streams' buffers hold.
    const big = Object.fromEntries([1, 2].map((i) => [`m/big-${i}.yaml`, `data: "${'x'.repeat(4 * 1024 * 1024)}"\n`]));
    const admin = server.tokens.create('ops-blocked', 'admin').token;
    for (const [agent, end] of [
      ['blocked-mover', 'move'],
      ['blocked-revoked', 'revoke'],
    ] as const) {
      const first = new ConfigProject(join(dir, `${agent}-first`));
      first.commit({ [`.gitlab/agents/${agent}/config.yaml`]: 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n', ...big });
      const second = new ConfigProject(join(dir, `${agent}-second`));
      second.commit({ [`.gitlab/agents/${agent}/config.yaml`]: 'gitops:\n  manifest_projects:\n    - paths: [{glob: "m/**"}]\n' });
      const reg = server.agents.register(agent, first.dir);
      const call = client.getObjectsToSynchronize({ project_id: '', commit_id: '', paths: [glob('m/**')], ref: undefined }, metadata(reg.token));
      call.on('error', () => undefined);
      // The header and the first chunk, then no more reads: the server's writes back up behind the agent's window.
      await new Promise<void>((resolve) =>
        call.on('data', (m: ObjectsToSynchronizeResponse) => {
          if (m.message?.$case !== 'object') return;
          call.pause();
          resolve();
        }),
      );
      const tracked = () => server.streams.configStreamAgents().includes(agent);
      expect(tracked()).toBe(true);
      if (end === 'move') {
        const res = await fetch(`http://${server.httpAddress}/api/v1/admin/agents/${agent}`, {
          method: 'PATCH',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ config_project: second.dir }),
        });
        expect(res.status).toBe(200);
        // As the agent does once its configuration stream ends: it asks for, and runs, the new project's config.yaml.
        await configurationSent(metadata(reg.token));
      } else expect(server.agents.revokeToken(agent, reg.tokenId)).toBe(true);
      await until(() => !tracked(), 20_000, `${agent}: the server's side of the stream finished (${end})`);
      call.cancel();
    }
  });

  // Every request checks the agent's config.yaml for two entries naming one repository (above). The configuration is
  // the latest value only: it is read once per commit of the configuration project, not on every request.
  it("reads the agent's config.yaml once per configuration-project commit, and again once the commit changes", async () => {
    const commitSent = async () => (await fetchObjects({ paths: [glob('manifests/*.yaml')] })).header?.commit_id;
    const configReads = (calls: string[]) => calls.filter((c) => c.includes('.gitlab/agents/edge/config.yaml'));
    const first = config.git('rev-parse', 'HEAD');
    const atFirst = await gitCalls(async () => {
      expect(await commitSent()).toBe(first);
      expect(await commitSent()).toBe(first);
    });
    // ls-tree, then cat-file: one read, for two requests.
    expect(configReads(atFirst)).toHaveLength(2);

    const second = config.commit({ 'manifests/cm.yaml': 'kind: ConfigMap\nmetadata: {name: two}\n' });
    const atSecond = await gitCalls(async () => {
      expect(await commitSent()).toBe(second);
      expect(await commitSent()).toBe(second);
    });
    expect(configReads(atSecond)).toHaveLength(2);
  });

  // module_status.gitops.syncing: a commit sent and not reported is under way only while the agent is still here.
  it('shows a sync as under way while the agent has a stream of the project open on this server, not once it has none', async () => {
    const reader = server.tokens.create('syncing-reader', 'read').token;
    const syncing = async () => {
      const res = await fetch(`http://${server.httpAddress}/api/v1/agents/edge`, { headers: { authorization: `Bearer ${reader}` } });
      expect(res.status).toBe(200);
      return ((await res.json()) as Agent).module_status.gitops?.syncing ?? [];
    };
    const head = config.git('rev-parse', 'HEAD');
    const sent = await fetchObjects({ paths: [glob('manifests/**')] });
    expect(sent.header?.commit_id).toBe(head);
    // As the agent does while it syncs: it asks for the next commit at once, and never reports.
    let leave!: () => void;
    const left = new Promise<void>((resolve) => (leave = resolve));
    const next = fetchObjects({ commit_id: head, paths: [glob('manifests/**')] }, { stop: left });
    await until(async () => ((await syncing()).some((p) => p.project_id === '' && p.commit_id === head) ? true : undefined), 10_000, 'the sync under way');
    // The agent leaves this server (failed over to another replica, stopped, uninstalled): not under way here any more.
    leave();
    await next;
    await until(async () => ((await syncing()).length === 0 ? true : undefined), 10_000, 'no sync under way once the stream closed');
  });
});
