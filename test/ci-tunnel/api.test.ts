import * as https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKube, type Kube } from '../helpers/kube.js';
import { startCiEnv, type CiEnv } from './env.js';

// CI job tokens over the admin HTTP API (/api/v1/admin/ci-tokens), used the
// way a CI server would: create one per job, hand it to the job's kubectl,
// revoke it when the job ends. The real kubectl goes through the tunnel to a
// real kube-apiserver with the token the API made.

const CONFIG = `ci_access:
  projects:
    - id: shop/app
      default_namespace: ci
`;

let kube: Kube;
let env: CiEnv;
let admin = '';
let reader = '';

beforeAll(async () => {
  kube = await startKube();
  env = await startCiEnv({ configYaml: CONFIG, agentKubeconfig: kube.kubeconfig });
  await kube.kubectl(['create', 'namespace', 'ci']);
  admin = env.server.tokens.create('ci-server', 'admin').token;
  reader = env.server.tokens.create('viewer', 'read').token;
}, 300_000);

afterAll(async () => {
  await env?.stop();
  await kube?.stop();
});

interface JobView {
  id: number;
  state: string;
  created_at: string;
  expires_at: string;
}
interface Answer {
  token?: string;
  job?: JobView;
  tokens?: JobView[];
  revoked?: number;
}

function api(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: Answer }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      `https://${env.server.httpAddress}${path}`,
      {
        method,
        ca: env.caPem,
        headers: { authorization: `Bearer ${token}`, ...(data ? { 'content-type': 'application/json' } : {}) },
      },
      (res) => {
        let text = '';
        res
          .setEncoding('utf8')
          .on('data', (d: string) => (text += d))
          .on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? (JSON.parse(text) as Answer) : {} }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

describe('CI job tokens over the admin HTTP API', () => {
  it('create, use with kubectl, list, revoke: the revoked job is refused', async () => {
    const created = await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', environment: 'production', ref: 'main', ttl_seconds: 600 });
    expect(created.status).toBe(201);
    const { token, job } = created.json as Required<Answer>;
    expect(token).toMatch(/^vdt_ci_/);
    expect(job).toMatchObject({ project: 'shop/app', environment: 'production', ref: 'main', protected: false, revoked_at: null, state: 'active' });
    expect(Date.parse(job.expires_at) - Date.parse(job.created_at)).toBe(600_000);

    const file = await env.kubeconfig(token);
    const applied = await kube.kubectl(['apply', '-f', '-'], {
      kubeconfig: file,
      input: JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'by-api-token' }, data: { a: '1' } }),
    });
    expect(applied.stderr).toBe('');
    expect(applied.stdout).toContain('configmap/by-api-token created');
    expect((await kube.kubectl(['get', 'configmap', 'by-api-token', '-n', 'ci', '-o', 'jsonpath={.data.a}'])).stdout).toBe('1');

    const listed = await api('GET', '/api/v1/admin/ci-tokens', admin);
    expect(listed.status).toBe(200);
    const row = listed.json.tokens!.find((t) => t.id === job.id);
    expect(row).toEqual(job);
    expect(JSON.stringify(listed.json)).not.toContain(token);

    const revoked = await api('DELETE', `/api/v1/admin/ci-tokens/${job.id}`, admin);
    expect(revoked).toEqual({ status: 200, json: { revoked: job.id } });
    expect((await api('DELETE', `/api/v1/admin/ci-tokens/${job.id}`, admin)).status).toBe(404);
    const refused = await kube.kubectl(['get', 'configmap', 'by-api-token'], { kubeconfig: file });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/Unauthorized|must be logged in/);
    const raw = await env.get('/api/v1/namespaces/ci/configmaps', { authorization: `Bearer ci:${env.agentId}:${token}` });
    expect(raw.status).toBe(401);
    expect(JSON.parse(raw.body).message).toContain(`the CI job token of job ${job.id} was revoked at`);
    expect((await api('GET', '/api/v1/admin/ci-tokens', admin)).json.tokens!.find((t) => t.id === job.id)?.state).toBe('revoked');
  });

  it('needs a feed token with scope admin, and checks the body', async () => {
    expect((await api('GET', '/api/v1/admin/ci-tokens', reader)).status).toBe(403);
    expect((await api('POST', '/api/v1/admin/ci-tokens', 'nope', { project: 'shop/app' })).status).toBe(401);
    // What a token may be issued for is one rule (jobRefusal, as for the CLI), answered in its words.
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', ttl_seconds: 86_401 })).toEqual({
      status: 400,
      json: {
        error: 'bad_request',
        message:
          'ttl_seconds must be at least 60 and at most 86400 (24h) (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. 3600; got 86401',
      },
    });
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', ttl_seconds: 0 })).toMatchObject({
      status: 400,
      json: {
        message:
          'ttl_seconds must be at least 60 and at most 86400 (24h) (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. 3600; got 0',
      },
    });
    // The CLI's shortest --ttl (1m) is the API's too: one rule.
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', ttl_seconds: 1 })).toMatchObject({
      status: 400,
      json: {
        message:
          'ttl_seconds must be at least 60 and at most 86400 (24h) (a job token lives as long as its job; a shorter one expires before the job can use it), e.g. 3600; got 1',
      },
    });
    expect((await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', ttl_seconds: 60 })).status).toBe(201);
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: '/shop app/' })).toMatchObject({
      status: 400,
      json: { message: 'project "/shop app/" is not a project path; give it as ci_access names it (group/subgroup/project, or a numeric id)' },
    });
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/../platform/x' })).toMatchObject({
      status: 400,
      json: { message: expect.stringMatching(/^project "shop\/\.\.\/platform\/x" is not a GitLab project path: each part may hold only/) },
    });
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', environment: 'prod:eu' })).toMatchObject({
      status: 400,
      json: { message: expect.stringMatching(/^environment "prod:eu" is not a GitLab environment name/) },
    });
    // GitLab's environment names may hold spaces (the slug is prod-env).
    expect((await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', environment: 'Prod Env' })).status).toBe(201);
    expect(await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', protected: true })).toMatchObject({
      status: 400,
      json: { message: 'protected says ref is a protected branch or tag; give ref <branch or tag> too' },
    });
    // A misspelt field is refused, not dropped (which would give the default lifetime).
    const misspelt = await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app', ttl: 60 });
    expect(misspelt).toMatchObject({ status: 400, json: { message: 'body: unknown field "ttl"; known: project, environment, ref, protected, ttl_seconds' } });
    // The default lifetime is an hour, as with the CLI.
    const d = await api('POST', '/api/v1/admin/ci-tokens', admin, { project: 'shop/app' });
    expect(d.status).toBe(201);
    expect(Date.parse(d.json.job!.expires_at) - Date.parse(d.json.job!.created_at)).toBe(3600_000);
  });
});
