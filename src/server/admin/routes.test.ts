import Fastify from 'fastify';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRootLogger } from '../../shared/log/logger.js';
import { AgentRegistry } from '../agents/agent-registry.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { openServerDb } from '../store/server-db.js';
import { httpErrorHandler } from '../feed/http-errors.js';
import { registerOpenApi } from '../feed/openapi.js';
import { registerAdminRoutes } from './routes.js';
import { ConfigProject } from '../../../test/helpers/processes.js';
import { capturingLogger } from '../../../test/helpers/logs.js';

const project = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-project-'))).dir;

function setup() {
  const { log, logs } = capturingLogger();
  const db = openServerDb(':memory:');
  const agents = new AgentRegistry(db);
  const tokens = new FeedTokens(db);
  const dropped: number[] = [];
  const ended: [string, string][] = [];
  const app = Fastify();
  // The feed server's error handler, which answers the registry's VerdictErrors as in production.
  app.setErrorHandler(httpErrorHandler);
  registerAdminRoutes(app, {
    agents,
    tokens,
    streams: {
      drop: (id) => {
        dropped.push(id);
        return 1;
      },
      endConfigStreams: (agent, project) => {
        ended.push([agent, project]);
        return 1;
      },
    },
    log,
  });
  const admin = tokens.create('ops', 'admin').token;
  const reader = tokens.create('viewer', 'read').token;
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, token = admin, payload?: object) =>
    app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  return { app, agents, call, reader, dropped, ended, logs };
}

describe('admin API: agents and their tokens', () => {
  it('needs a feed token with scope admin', async () => {
    const { app, call, reader } = setup();
    expect((await app.inject({ method: 'GET', url: '/api/v1/admin/agents' })).statusCode).toBe(401);
    const res = await call('GET', '/api/v1/admin/agents', reader);
    expect(res.statusCode).toBe(403);
    expect(res.json().message).toMatch(/needs "admin"/);
    // Who may call is settled before what was sent: a bad body without a token is 401, not 400.
    expect((await call('POST', '/api/v1/admin/agents', 'nope', { name: '' })).statusCode).toBe(401);
    expect((await call('DELETE', '/api/v1/admin/agents/edge/tokens/0', 'nope')).statusCode).toBe(401);
  });

  it('documents every route with its scope and answers in the OpenAPI document', async () => {
    const app = Fastify();
    await registerOpenApi(app);
    registerAdminRoutes(app, {
      agents: new AgentRegistry(openServerDb(':memory:')),
      tokens: new FeedTokens(openServerDb(':memory:')),
      streams: { drop: () => 0, endConfigStreams: () => 0 },
      log: createRootLogger({ level: 'silent' }),
    });
    await app.ready();
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, { 'x-required-scope'?: string; summary?: string; responses: Record<string, unknown> }>>;
    };
    const ops = Object.entries(doc.paths).flatMap(([path, o]) => Object.entries(o).map(([m, op]) => ({ what: `${m} ${path}`, op })));
    expect(ops.map((o) => o.what).sort()).toEqual([
      'delete /api/v1/admin/agents/{agent}/tokens/{id}',
      'get /api/v1/admin/agents',
      'get /api/v1/admin/agents/{agent}/tokens',
      'patch /api/v1/admin/agents/{agent}',
      'post /api/v1/admin/agents',
      'post /api/v1/admin/agents/{agent}/tokens',
    ]);
    // The token's body may be left out; registering an agent links to the routes under it by name.
    const post = doc.paths['/api/v1/admin/agents']!.post as unknown as {
      responses: Record<string, { links?: Record<string, { parameters: Record<string, string> }> }>;
    };
    expect((doc.paths['/api/v1/admin/agents/{agent}/tokens']!.post as unknown as { requestBody: { required: boolean } }).requestBody.required).toBe(false);
    expect(post.responses['201']!.links!.CreateToken!.parameters).toEqual({ agent: '$response.body#/agent/name' });
    expect(post.responses['201']!.links!.SetConfigProject!.parameters).toEqual({ agent: '$response.body#/agent/name' });
    for (const { what, op } of ops) {
      expect(op['x-required-scope'], what).toBe('admin');
      expect(op.summary, what).toBeTruthy();
      expect(Object.keys(op.responses), what).toEqual(expect.arrayContaining(['401', '403']));
    }
  });

  it('registers an agent, creates, lists and revokes its tokens', async () => {
    const { call, agents, dropped } = setup();
    const reg = await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project });
    expect(reg.statusCode).toBe(201);
    const first = reg.json().token as { id: number; secret: string };
    expect(first.secret).toMatch(/^vdt_agent_/);
    expect(agents.authenticate(first.secret)?.name).toBe('edge');
    expect((await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project })).statusCode).toBe(409);

    const created = await call('POST', '/api/v1/admin/agents/edge/tokens', undefined, { name: 'rotation' });
    expect(created.statusCode).toBe(201);
    const second = created.json().token as { id: number; secret: string; name: string };
    expect(second.name).toBe('rotation');

    const list = await call('GET', '/api/v1/admin/agents/edge/tokens');
    expect(list.json().tokens.map((t: { id: number }) => t.id)).toEqual([first.id, second.id]);
    expect(list.body).not.toContain(second.secret);

    const revoked = await call('DELETE', `/api/v1/admin/agents/edge/tokens/${first.id}`);
    expect(revoked.json()).toEqual({ revoked: first.id, closed_streams: 1 });
    expect(dropped).toEqual([first.id]);
    expect(agents.authenticate(first.secret)).toBeUndefined();
    expect((await call('DELETE', `/api/v1/admin/agents/edge/tokens/${first.id}`)).statusCode).toBe(404);

    const all = await call('GET', '/api/v1/admin/agents');
    expect(all.json().agents).toMatchObject([{ name: 'edge', tokens: 1 }]);
  });

  it('refuses a misspelt field instead of dropping it (fastify would strip it and create with defaults)', async () => {
    const { call } = setup();
    const reg = await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project, tokn_name: 'ci' });
    expect(reg.statusCode).toBe(400);
    expect(reg.json().message).toBe('body: unknown field "tokn_name"; known: name, config_project, token_name');
    await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project });
    const tok = await call('POST', '/api/v1/admin/agents/edge/tokens', undefined, { nmae: 'rotation' });
    expect(tok.statusCode).toBe(400);
    expect(tok.json().message).toBe('body: unknown field "nmae"; known: name');
  });

  it('creates a token without a body and explains unknown agents', async () => {
    const { call } = setup();
    await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project });
    expect((await call('POST', '/api/v1/admin/agents/edge/tokens')).statusCode).toBe(201);
    const res = await call('GET', '/api/v1/admin/agents/nope/tokens');
    expect(res.statusCode).toBe(404);
    expect(res.json()).toEqual({ error: 'not_found', message: expect.stringMatching(/verdict agents register nope/) });
    const bad = await call('POST', '/api/v1/admin/agents', undefined, { name: 'Bad_Name', config_project: project });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toEqual({ error: 'bad_request', message: expect.any(String) });
    // The registry's own refusal (a configuration project that does not exist), not the schema's.
    const gone = await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge2', config_project: join(project, 'missing') });
    expect(gone.statusCode).toBe(400);
    expect(gone.json()).toEqual({ error: 'bad_request', message: expect.stringMatching(/^configuration project .* does not exist/) });
    // A name no agent can have is refused by the schema, as the OpenAPI document says, not looked up.
    expect((await call('GET', '/api/v1/admin/agents/Bad_Name/tokens')).statusCode).toBe(400);
    expect((await call('POST', '/api/v1/admin/agents/edge/tokens', undefined, { name: 'two words' })).statusCode).toBe(400);
  });

  it("lists each agent's configuration status: commit, warnings, a later invalid commit", async () => {
    const { call, agents } = setup();
    agents.register('edge', project);
    agents.register('idle', project);
    const warning = {
      file: '.gitlab/agents/edge/config.yaml',
      line: 3,
      path: 'gitops',
      message: 'not used by Verdict (GitOps synchronisation is not part of this release); accepted and ignored',
    };
    agents.recordConfig('edge', 'c1', [warning]);
    agents.recordConfigInvalid('edge', 'c2', 'invalid configuration at commit c2: .gitlab/agents/edge/config.yaml:2: cilium: must be a mapping');
    const listed = (await call('GET', '/api/v1/admin/agents')).json().agents as { name: string; config: unknown }[];
    expect(listed.find((a) => a.name === 'idle')?.config).toBeNull();
    expect(listed.find((a) => a.name === 'edge')?.config).toMatchObject({
      commit_id: 'c1',
      warnings: [warning],
      invalid: { commit_id: 'c2', error: expect.stringContaining('cilium: must be a mapping') },
    });
  });

  it('moves an agent to another configuration project, checked as registering checks it; its tokens stay', async () => {
    const { call, agents, ended, logs } = setup();
    const reg = await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project });
    const secret = (reg.json().token as { secret: string }).secret;
    const moved = new ConfigProject(mkdtempSync(join(tmpdir(), 'verdict-moved-')));
    moved.commit({ 'README.md': 'x\n' });

    const res = await call('PATCH', '/api/v1/admin/agents/edge', undefined, { config_project: moved.dir });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      agent: { id: expect.any(Number), name: 'edge', config_project: moved.dir, created_at: expect.any(String) },
      notes: [`${moved.dir} has no .gitlab/agents/edge/config.yaml on its default branch yet; the agent gets its configuration once it is committed there`],
    });
    expect(agents.get('edge')?.config_project).toBe(moved.dir);
    expect(agents.authenticate(secret)?.config_project).toBe(moved.dir);
    expect(ended).toEqual([['edge', moved.dir]]);
    expect(logs.filter((l) => l.msg === 'Agents: changed the configuration project')).toMatchObject([
      { level: 'info', agent_name: 'edge', from: project, to: moved.dir, actor: 'ops' },
    ]);

    // The same project again: answered as before, but nothing moved, so nothing is ended or logged.
    const again = await call('PATCH', '/api/v1/admin/agents/edge', undefined, { config_project: moved.dir });
    expect(again.statusCode).toBe(200);
    expect(ended).toHaveLength(1);
    expect(logs.filter((l) => l.msg === 'Agents: changed the configuration project')).toHaveLength(1);
  });

  it('refuses a bad configuration project, an unknown agent and unknown fields with what to do, and changes nothing', async () => {
    const { call, agents, ended } = setup();
    await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge', config_project: project });
    const plain = mkdtempSync(join(tmpdir(), 'verdict-plain-'));
    const cases: [object, number, RegExp][] = [
      [{ config_project: plain }, 400, /^configuration project .* is not a git repository; `git init` there/],
      [{ config_project: join(project, 'missing') }, 400, /^configuration project .* does not exist/],
      [{ config_project: 'https://gitlab.example.com/ops/infra.git' }, 400, /is a URL; it must be the path of a git repository on the server's disk/],
      [{ config_project: 'git/infra' }, 400, /^configuration project "git\/infra" is a relative path; give its absolute path on the server/],
      [{ config_project: 'backups/2026-12-06T10:00/infra' }, 400, /is a relative path; give its absolute path on the server/],
      [{ config_project: project, name: 'edge' }, 400, /^body: unknown field "name"; known: config_project$/],
      [{}, 400, /config_project/],
    ];
    for (const [body, status, message] of cases) {
      const res = await call('PATCH', '/api/v1/admin/agents/edge', undefined, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(status);
      expect(res.json(), JSON.stringify(body)).toEqual({ error: 'bad_request', message: expect.stringMatching(message) });
    }
    const relative = await call('POST', '/api/v1/admin/agents', undefined, { name: 'edge-2', config_project: 'git/infra' });
    expect([relative.statusCode, relative.json().message]).toEqual([400, expect.stringMatching(/is a relative path; give its absolute path/)]);
    const unknown = await call('PATCH', '/api/v1/admin/agents/nope', undefined, { config_project: project });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toEqual({ error: 'not_found', message: expect.stringMatching(/no agent named "nope"; register it first/) });
    expect(agents.get('edge')?.config_project).toBe(project);
    expect(ended).toEqual([]);
  });
});
