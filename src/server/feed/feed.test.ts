import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { connect as connectTls } from 'node:tls';
import websocket from '@fastify/websocket';
import Fastify, { type FastifyInstance, type InjectOptions, type RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ALERT_SOURCES } from '../../shared/alert/payload.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { FeedTokens } from '../auth/feed-tokens.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload, falcoPayload } from '../store/test-payloads.js';
import { registerFeedTokenAdminRoutes } from './admin-routes.js';
import { registerAlertRoutes } from './alerts-routes.js';
import { buildHttpServer } from './http-server.js';
import { StreamHub } from './stream.js';
import { validatorCompiler } from './validators.js';
import { makeCerts } from '../../../test/helpers/certs.js';
import { registerStreamRoute } from './stream-routes.js';

let n = 0;
const ev = (payload: ReturnType<typeof ciliumPayload>) => ({ id: `feed-${++n}`, payload });

describe('feed API', () => {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const read = tokens.create('reader', 'read').token;
  const write = tokens.create('alice', 'write').token;
  const admin = tokens.create('root', 'admin').token;
  let app: FastifyInstance;

  const get = async (url: string, token: string | null = read) => {
    const res = await app.inject({ method: 'GET', url, headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.statusCode, body: res.json() as any, headers: res.headers };
  };
  const patch = async (url: string, body: unknown, token = write) => {
    const res = await app.inject({ method: 'PATCH', url, payload: body as object, headers: { authorization: `Bearer ${token}` } });
    return { status: res.statusCode, body: res.json() as any };
  };

  beforeAll(async () => {
    app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    const t = (m: number) => new Date(Date.now() - (10 - m) * 60_000).toISOString();
    store.ingest('edge', [
      ev(ciliumPayload({ fp: 'a', ns: 'shop', dst: 'payments-api', time: t(1) })),
      ev(ciliumPayload({ fp: 'b', ns: 'db', dst: 'postgres', policy: 'db-lockdown', severity: 'high', time: t(2) })),
      ev(falcoPayload({ fp: 'c', ns: 'shop', pod: 'checkout-7f9', severity: 'critical', time: t(3) })),
      ev(falcoPayload({ fp: 'd', rule: 'Write below etc', ns: 'kube-system', pod: 'coredns-1', severity: 'low', time: t(4) })),
    ]);
  });
  afterAll(async () => {
    await app.close();
    db.close();
  });

  it('refuses requests without a token (401) and with too small a scope (403), before looking at the query', async () => {
    for (const url of [
      '/api/v1/alerts',
      '/api/v1/alerts?status=bogus',
      '/api/v1/alerts/1',
      '/api/v1/alerts/counts?by=severity',
      '/api/v1/admin/feed-tokens',
      '/api/v1/alerts/stream',
    ]) {
      const r = await get(url, null);
      expect(r.status, url).toBe(401);
      expect(r.body.message).toMatch(/verdict tokens create/);
    }
    expect((await get('/api/v1/alerts', 'vdt_feed_nope')).status).toBe(401);
    const r = await patch('/api/v1/alerts/1', { status: 'bogus' }, read);
    expect(r.status).toBe(403);
    expect(r.body.message).toMatch(/scope "read".*needs "write"/);
    expect((await get('/api/v1/admin/feed-tokens', write)).status).toBe(403);
  });

  it('lists alerts with the fields clients rely on, a next cursor and a stream cursor', async () => {
    const r = await get('/api/v1/alerts');
    expect(r.status).toBe(200);
    expect(r.body.alerts).toHaveLength(4);
    const a = r.body.alerts.find((x: any) => x.namespace === 'db');
    expect(a).toMatchObject({
      status: 'triggered',
      source: 'cilium',
      severity: 'high',
      namespace: 'db',
      count: 1,
      rule: '',
      policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'db', name: 'db-lockdown' }],
    });
    for (const k of ['id', 'title', 'first_seen', 'last_seen', 'seq', 'details', 'labels', 'agent', 'fingerprint']) expect(a).toHaveProperty(k);
    expect(r.body.next_cursor).toBeNull();
    expect(r.body.stream_cursor).toBe(store.currentSeq());
    expect(r.headers['x-content-type-options']).toBe('nosniff');
  });

  it('filters, searches (hyphens included) and pages', async () => {
    const ns = async (q: string) => (await get(`/api/v1/alerts?${q}`)).body.alerts.map((a: any) => a.namespace);
    expect(await ns('severity=critical&severity=high')).toEqual(['shop', 'db']);
    expect(await ns('severity=critical,high&source=falco')).toEqual(['shop']);
    expect(await ns('namespace=shop,kube-system&sort=created&order=asc')).toEqual(['shop', 'shop', 'kube-system']);
    expect(await ns('policy=db%2Fdb-lockdown')).toEqual(['db']);
    expect(await ns(`rule=${encodeURIComponent('Write below etc')}`)).toEqual(['kube-system']);
    expect(await ns('q=payments-api')).toEqual(['shop']);
    expect(await ns('q=checkout-7f9')).toEqual(['shop']);
    expect(await ns('q=db-lockdown')).toEqual(['db']);
    expect(await ns('since=450s')).toEqual(['kube-system', 'shop']);
    expect(
      await ns(
        `since=${encodeURIComponent(new Date(Date.now() - 8.5 * 60_000).toISOString())}&until=${encodeURIComponent(new Date(Date.now() - 7.5 * 60_000).toISOString())}`,
      ),
    ).toEqual(['db']);
    const p1 = await get('/api/v1/alerts?limit=3');
    expect(p1.body.alerts).toHaveLength(3);
    const p2 = await get(`/api/v1/alerts?limit=3&cursor=${p1.body.next_cursor}`);
    expect(p2.body.alerts).toHaveLength(1);
    expect(p2.body.next_cursor).toBeNull();
  });

  it('answers bad query values with 400 and what to change', async () => {
    const cases: [string, RegExp][] = [
      ['status=open', /status: "open" is not one of triggered, acknowledged, resolved, ignored$/],
      ['severity=urgent', /severity: "urgent" is not one of critical, high, medium, low, info$/],
      ['limit=0', /limit: must be at least 1/],
      ['limit=ten', /limit: must be a whole number/],
      ['sort=name', /sort: "name" is not one of last_seen, created, severity, count$/],
      ['limit=1&limit=2', /^limit: is given 2 times; send it once$/],
      ['sort=count&sort=created', /^sort: is given 2 times; send it once$/],
      ['since=yesterday', /since: "yesterday" is not a time: RFC 3339/],
      // The documented form, too long ago to be a time.
      ['since=99999999999d', /^since: "99999999999d" is out of range: a duration has at most 6 digits \(999999d\)$/],
      ['until=1234567w', /^until: "1234567w" is out of range/],
      ['since=2024-05-01T10:00:00', /since: "2024-05-01T10:00:00" is not a time: RFC 3339 with its offset/],
      ['status=triggered,', /status: "" is not one of triggered, acknowledged, resolved, ignored$/],
      ['agent=Edge_1', /agent: "Edge_1" is not an agent name \(lowercase letters, digits and '-', e\.g\. edge-1\)$/],
      ['agent=QA', /agent: "QA" is not an agent name/],
      // Namespaces are taken as alerts hold them (a Falco event's need not be a DNS label): only their length is checked.
      [`namespace=${'n'.repeat(254)}`, /^namespace: must be at most 253 characters/],
      [
        'policy=Bad_Name',
        /^policy: "Bad_Name" is not a policy: namespace\/name or a bare name \(lowercase letters, digits, '-' and '\.', e\.g\. shop\/allow-dns/,
      ],
      ['policy=shop%2FBad_Name', /^policy: "shop\/Bad_Name" is not a policy/],
      ['cursor=a!b', /^cursor: "a!b" is not a cursor this server made; pass next_cursor/],
      ['cursor=abc', /cursor is not one this server made/],
      ['statuses=triggered', /unknown query parameter "statuses"/],
      [`q=${'x'.repeat(201)}`, /q: must be at most 200 characters/],
    ];
    for (const [q, re] of cases) {
      const r = await get(`/api/v1/alerts?${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error).toBe('bad_request');
      expect(r.body.message, q).toMatch(re);
    }
    expect((await get('/api/v1/alerts/counts?by=pod')).body.message).toMatch(/by: "pod" is not one of severity, source, rule, namespace, policy/);
    expect((await get('/api/v1/alerts/counts')).body.message).toMatch(/by: is required/);
    expect((await get('/api/v1/alerts/abc')).status).toBe(400);
  });

  it('names every source the filter takes when refusing one, from the list it checks against', async () => {
    const r = await get('/api/v1/alerts?source=hubble');
    expect(r.status).toBe(400);
    expect(r.body.message).toBe(`source: "hubble" is not one of ${ALERT_SOURCES.join(', ')}`);
    for (const source of ALERT_SOURCES) expect((await get(`/api/v1/alerts?source=${source}`)).status, source).toBe(200);
  });

  it('says in words what every pattern-checked parameter takes, never the pattern', async () => {
    type ParamSchema = { pattern?: string; 'x-expected'?: string; items?: ParamSchema };
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, { parameters?: { in: string; name: string; schema: ParamSchema }[] }>>;
    };
    const bad = 'Bad_Value!';
    let checked = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const param of op.parameters ?? []) {
          const schema: ParamSchema = param.schema.items ?? param.schema;
          if (!schema.pattern || !['query', 'path'].includes(param.in)) continue;
          // Other path parameters get a value their own pattern takes, if any.
          const url = path.replace(/\{(\w+)\}/g, (_, n: string) => (n === param.name ? bad : n === 'id' ? '1' : 'x'));
          const query = param.in === 'query' ? `?${param.name}=${encodeURIComponent(bad)}${path.endsWith('/counts') ? '&by=severity' : ''}` : '';
          const res = await app.inject({ method: method.toUpperCase() as 'GET', url: url + query, headers: { authorization: `Bearer ${admin}` } });
          const what = `${method} ${path} ${param.name}`;
          expect(res.statusCode, what).toBe(400);
          const body = res.json() as { error: string; message: string };
          expect(body.error, what).toBe('bad_request');
          expect(body.message, what).toMatch(new RegExp(`^${param.name}: "Bad_Value!" is not `));
          expect(body.message, what).not.toContain(schema.pattern);
          expect(body.message, what).not.toMatch(/\(\?:|\^\[/);
          // The feed's own parameters say what they take, with an example where it helps.
          if (path.startsWith('/api/v1/alerts')) expect(schema['x-expected'], what).toBeTruthy();
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(20);
  });

  it("answers fastify's refusals in Verdict's form, with what to send instead, and takes an empty JSON body as none", async () => {
    const auth = { authorization: `Bearer ${write}` };
    const id = (await get('/api/v1/alerts')).body.alerts[0].id;
    // curl -d's default content type.
    const form = await app.inject({
      method: 'PATCH',
      url: `/api/v1/alerts/${id}`,
      payload: '{"status":"resolved"}',
      headers: { ...auth, 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.statusCode).toBe(415);
    expect(form.json()).toEqual({
      error: 'unsupported_media_type',
      message: expect.stringMatching(/"application\/x-www-form-urlencoded".*send the body as JSON with the header Content-Type: application\/json$/),
    });
    const cases: [string, InjectOptions, number, string, RegExp][] = [
      [
        'invalid JSON',
        { method: 'PATCH', url: `/api/v1/alerts/${id}`, payload: '{"status":', headers: { ...auth, 'content-type': 'application/json' } },
        400,
        'bad_request',
        /^body: is not valid JSON/,
      ],
      [
        'a required body left empty',
        { method: 'PATCH', url: `/api/v1/alerts/${id}`, payload: '', headers: { ...auth, 'content-type': 'application/json' } },
        400,
        'bad_request',
        /^body: must be a JSON object$/,
      ],
      [
        'over the body limit',
        {
          method: 'PATCH',
          url: `/api/v1/alerts/${id}`,
          payload: `{"status":"${'x'.repeat(1024 * 1024)}"}`,
          headers: { ...auth, 'content-type': 'application/json' },
        },
        413,
        'payload_too_large',
        /^the body is over 1 MiB/,
      ],
      [
        'a path that is not percent-encoding',
        { method: 'GET', url: '/api/v1/alerts/%zz', headers: auth },
        400,
        'bad_request',
        /"\/api\/v1\/alerts\/%zz" is not valid percent-encoding/,
      ],
    ];
    for (const [what, req, status, error, message] of cases) {
      const res = await app.inject(req);
      expect(res.statusCode, what).toBe(status);
      const body = res.json() as { error: string; message: string };
      expect(body.error, what).toBe(error);
      expect(body.message, what).toMatch(message);
      expect(JSON.stringify(body), what).not.toMatch(/fst_err|statusCode/i);
    }
    // Clients that send Content-Type: application/json on every request: an empty body is no body.
    const del = await app.inject({
      method: 'DELETE',
      url: '/api/v1/admin/feed-tokens/99999',
      payload: '',
      headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    });
    expect(del.statusCode).toBe(404);
    expect(del.json().message).toMatch(/no active feed token with id 99999/);
  });

  it('reads since after until as an empty window, not a mistake', async () => {
    const r = await get('/api/v1/alerts?since=1h&until=2h');
    expect(r.status).toBe(200);
    expect(r.body.alerts).toEqual([]);
  });

  it('takes every since and until its OpenAPI pattern admits, and refuses the rest', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as any;
    const since = doc.paths['/api/v1/alerts'].get.parameters.find((p: any) => p.name === 'since');
    const pattern = new RegExp(since.schema.pattern);
    const values = [
      '15m',
      '999999w',
      '0s',
      '2024-05-01',
      '2024-02-31',
      '2024-05-01T10:00Z',
      '2024-05-01T10:00:00.123456789+05:30',
      '0000-01-01T00:00:00Z',
      '1000000s',
      '15 m',
      '2024-5-1',
      '2024-05-01T24:00:00Z',
      '2024-05-01T10:00:00',
      '2024-05-01 10:00:00Z',
      '0'.repeat(40),
      '٣m',
    ];
    for (const v of values) {
      const r = await get(`/api/v1/alerts?since=${encodeURIComponent(v)}`);
      expect(r.status, v).toBe(pattern.test(v) ? 200 : 400);
    }
  });

  it('answers 405 with Allow for a method a path does not take', async () => {
    const cases: [string, string, string][] = [
      ['TRACE', '/api/v1/alerts/1', 'GET, HEAD, PATCH'],
      ['DELETE', '/api/v1/alerts', 'GET, HEAD'],
      // PATCH /api/v1/alerts/:id would take "counts" as an id; the path is the counts resource.
      ['PATCH', '/api/v1/alerts/counts', 'GET, HEAD'],
      ['PUT', '/api/v1/admin/feed-tokens/1', 'DELETE'],
    ];
    for (const [method, url, allow] of cases) {
      const res = await app.inject({
        method: method as 'GET',
        url,
        payload: method === 'PUT' ? 'x' : undefined,
        headers: { authorization: `Bearer ${admin}`, ...(method === 'PUT' ? { 'content-type': 'text/plain' } : {}) },
      });
      expect(res.statusCode, `${method} ${url}`).toBe(405);
      expect(res.headers.allow, `${method} ${url}`).toBe(allow);
      expect(res.json()).toMatchObject({ error: 'method_not_allowed' });
    }
    const missing = await app.inject({ method: 'GET', url: '/api/v1/nothing' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
  });

  it('refuses a too-long path parameter by its schema (400), not 414', async () => {
    const res = await app.inject({ method: 'DELETE', url: `/api/v1/admin/feed-tokens/${'x'.repeat(300)}`, headers: { authorization: `Bearer ${admin}` } });
    expect(res.statusCode).toBe(400);
  });

  it('takes JSON bodies as typed: no coercion of false to "false"', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/admin/feed-tokens', payload: { name: false }, headers: { authorization: `Bearer ${admin}` } });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(/^name: must be a string$/);
  });

  it('shows one alert with occurrences and history; changes status with who and when', async () => {
    const id = (await get('/api/v1/alerts?namespace=db')).body.alerts[0].id;
    store.ingest('edge', [ev(ciliumPayload({ fp: 'b', ns: 'db', dst: 'postgres', policy: 'db-lockdown', severity: 'high' }))]);
    let d = await get(`/api/v1/alerts/${id}`);
    expect(d.status).toBe(200);
    expect(d.body.alert).toMatchObject({ id, count: 2, events: 2 });
    expect(d.body.occurrences).toHaveLength(2);
    expect(d.body.occurrences[0].samples[0]).toHaveProperty('verdict', 'DROPPED');
    expect(d.body.alert.samples).toHaveLength(2);
    expect(d.body.history).toEqual([]);

    const r = await patch(`/api/v1/alerts/${id}`, { status: 'acknowledged' });
    expect(r.status).toBe(200);
    expect(r.body.alert.status).toBe('acknowledged');
    d = await get(`/api/v1/alerts/${id}`);
    expect(d.body.history).toHaveLength(1);
    expect(d.body.history[0]).toMatchObject({ from: 'triggered', to: 'acknowledged', actor: expect.stringContaining('alice') });
    expect((await patch(`/api/v1/alerts/${id}`, { status: 'done' })).body.message).toMatch(
      /status: "done" is not one of triggered, acknowledged, resolved, ignored/,
    );
    expect((await patch(`/api/v1/alerts/${id}`, { status: 'resolved', note: 'x' })).body.message).toMatch(/unknown field "note"/);
    expect((await patch('/api/v1/alerts/99999', { status: 'resolved' })).status).toBe(404);
    expect((await get('/api/v1/alerts/99999')).status).toBe(404);
  });

  it('refuses to reopen a resolved alert while its fingerprint has an open one (409)', async () => {
    const id = (await get('/api/v1/alerts?namespace=kube-system')).body.alerts[0].id;
    expect((await patch(`/api/v1/alerts/${id}`, { status: 'resolved' })).status).toBe(200);
    store.ingest('edge', [ev(falcoPayload({ fp: 'd', rule: 'Write below etc', ns: 'kube-system', pod: 'coredns-1', severity: 'low' }))]);
    const r = await patch(`/api/v1/alerts/${id}`, { status: 'triggered' });
    expect(r.status).toBe(409);
    expect(r.body.message).toMatch(/already open/);
  });

  it('counts by severity, source, rule, namespace and policy', async () => {
    const c = async (q: string) => (await get(`/api/v1/alerts/counts?${q}`)).body;
    expect((await c('by=severity')).counts.map((x: any) => x.key).sort()).toEqual(['critical', 'high', 'low', 'medium']);
    expect(await c('by=source&status=triggered')).toEqual({
      by: 'source',
      counts: [
        { key: 'falco', alerts: 2, events: 2 },
        { key: 'cilium', alerts: 1, events: 1 },
      ],
    });
    expect((await c('by=policy')).counts).toEqual([
      { key: 'db/db-lockdown', alerts: 1, events: 2 },
      { key: 'shop/payments-api-ingress', alerts: 1, events: 1 },
    ]);
    expect((await c('by=rule&q=coredns')).counts).toEqual([{ key: 'Write below etc', alerts: 2, events: 2 }]);
    expect((await c('by=namespace&source=cilium')).counts.map((x: any) => x.key).sort()).toEqual(['db', 'shop']);
  });

  it('manages feed tokens over the admin API', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/admin/feed-tokens',
      payload: { name: 'ci', scope: 'read' },
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(res.statusCode).toBe(201);
    const created = res.json() as { id: number; token: string; scope: string };
    expect(created).toMatchObject({ name: 'ci', scope: 'read' });
    expect(created.token).toMatch(/^vdt_feed_/);
    expect((await get('/api/v1/alerts', created.token)).status).toBe(200);
    const list = await get('/api/v1/admin/feed-tokens', admin);
    expect(list.body.tokens.map((t: any) => t.name)).toEqual(['reader', 'alice', 'root', 'ci']);
    expect(list.body.tokens[0]).not.toHaveProperty('token_hash');
    const del = await app.inject({ method: 'DELETE', url: `/api/v1/admin/feed-tokens/${created.id}`, headers: { authorization: `Bearer ${admin}` } });
    expect(del.statusCode).toBe(204);
    expect((await get('/api/v1/alerts', created.token)).status).toBe(401);
    const again = await app.inject({ method: 'DELETE', url: `/api/v1/admin/feed-tokens/${created.id}`, headers: { authorization: `Bearer ${admin}` } });
    expect(again.statusCode).toBe(404);
    const bad = await app.inject({
      method: 'POST',
      url: '/api/v1/admin/feed-tokens',
      payload: { name: 'x', scope: 'root' },
      headers: { authorization: `Bearer ${admin}` },
    });
    expect(bad.statusCode).toBe(400);
    expect((bad.json() as { message: string }).message).toMatch(/scope: "root" is not one of read, write, admin/);
  });

  it('publishes an OpenAPI document of every feed route, built from their schemas', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as any;
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/admin/feed-tokens',
        '/api/v1/admin/feed-tokens/{id}',
        '/api/v1/alerts',
        '/api/v1/alerts/counts',
        '/api/v1/alerts/stream',
        '/api/v1/alerts/{id}',
      ]),
    );
    const list = doc.paths['/api/v1/alerts'].get;
    expect(list.parameters.map((p: any) => p.name)).toEqual(expect.arrayContaining(['status', 'severity', 'q', 'cursor', 'sort', 'limit', 'since']));
    expect(list['x-required-scope']).toBe('read');
    expect(doc.paths['/api/v1/alerts/{id}'].patch.requestBody.content['application/json'].schema.properties.status.enum).toContain('acknowledged');
    expect(doc.paths['/api/v1/alerts/stream'].get.description).toMatch(/bearer\.<feed token>/);
    expect(doc.components.securitySchemes.feedToken.scheme).toBe('bearer');
    // ?access_token= is the second way to send the token, and so a scheme, not a filter.
    expect(doc.components.securitySchemes.feedTokenQuery).toMatchObject({ type: 'apiKey', in: 'query', name: 'access_token' });
    expect(list.security).toEqual([{ feedToken: [] }, { feedTokenQuery: [] }]);
    expect(list.parameters.map((p: any) => p.name)).not.toContain('access_token');
    expect((await get(`/api/v1/alerts?access_token=${read}`, null)).status).toBe(200);
  });

  it('gives every feed route JSON schemas for what it takes and answers, a scope, and a place in the OpenAPI document', async () => {
    const bare = Fastify();
    bare.setValidatorCompiler(validatorCompiler);
    await bare.register(websocket);
    const routes: RouteOptions[] = [];
    bare.addHook('onRoute', (r) => {
      routes.push(r);
    });
    const hub = new StreamHub(store, tokens, createRootLogger({ name: 'test', level: 'silent' }));
    registerAlertRoutes(bare, { store, tokens });
    registerStreamRoute(bare, { store, tokens, hub });
    registerFeedTokenAdminRoutes(bare, { tokens });
    await bare.ready();
    const doc = (await app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as {
      paths: Record<string, Record<string, { parameters: unknown[]; responses: Record<string, unknown> }>>;
    };
    const ops = routes.flatMap((r) => (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD').map((m) => ({ r, m: m.toLowerCase() })));
    expect(ops.length).toBe(8);
    for (const { r, m } of ops) {
      const what = `${m} ${r.url}`;
      const schema = r.schema as Record<string, any> | undefined;
      expect(schema, what).toBeDefined();
      if (r.url.includes(':')) expect(schema!.params?.required, what).toEqual(expect.arrayContaining([...r.url.matchAll(/:(\w+)/g)].map((x) => x[1])));
      // The routes that take filters (the admin token list takes none).
      if (['/api/v1/alerts', '/api/v1/alerts/counts', '/api/v1/alerts/stream'].includes(r.url))
        expect(schema!.querystring?.properties?.status, what).toBeDefined();
      if (m === 'post' || m === 'patch') expect(schema!.body?.type, what).toBe('object');
      expect(Object.keys(schema!.response ?? {}), what).toEqual(expect.arrayContaining(['401', '403']));
      expect(Object.keys(schema!.response).some((c) => /^2/.test(c)) || r.url.endsWith('/stream'), what).toBe(true);
      expect((r.config as { scope?: string } | undefined)?.scope, what).toMatch(/^(read|write|admin)$/);
      const op = doc.paths[r.url.replace(/:(\w+)/g, '{$1}')]?.[m];
      expect(op, `${what} in openapi.json`).toBeDefined();
      expect(Object.keys(op!.responses), what).toEqual(expect.arrayContaining(Object.keys(schema!.response)));
    }
    hub.close();
    await bare.close();
  });

  it('serves the web page with a strict Content-Security-Policy', async () => {
    const page = await app.inject({ method: 'GET', url: '/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    const csp = String(page.headers['content-security-policy']);
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.body).toContain('<script src="/app.js"');
    expect(page.body).not.toMatch(/<script>[^<]/);
    const js = await app.inject({ method: 'GET', url: '/app.js' });
    expect(js.headers['content-type']).toMatch(/javascript/);
    // Data reaches the page as text only.
    expect(js.body).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/);
    expect((await app.inject({ method: 'GET', url: '/app.css' })).statusCode).toBe(200);
  });
});

describe("feed API: an alert's severity", () => {
  it('shows the occurrence that set the severity beside the latest', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const tokens = new FeedTokens(db);
    const token = tokens.create('reader', 'read').token;
    const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    try {
      let id = 0;
      for (const severity of ['low', 'critical', 'low'] as const)
        id = store.ingest('edge', [ev(falcoPayload({ fp: 'sev', severity, output: `a ${severity} one` }))]).alerts[0]!.id;
      const d = (await app.inject({ url: `/api/v1/alerts/${id}`, headers: { authorization: `Bearer ${token}` } })).json() as any;
      expect(d.alert.severity).toBe('critical');
      expect(d.occurrences[0]).toMatchObject({ severity: 'low', description: 'a low one' });
      expect(d.severity_occurrence).toMatchObject({ severity: 'critical', description: 'a critical one' });
      expect(JSON.stringify(d.severity_occurrence.samples)).toContain('a critical one');
    } finally {
      await app.close();
      db.close();
    }
  });
});

describe('feed API: event times and receipt', () => {
  it('shows when each alert was received, and flags one stamped well ahead of its receipt', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const tokens = new FeedTokens(db);
    const token = tokens.create('reader', 'read').token;
    const app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    try {
      const ahead = new Date(Date.now() + 86400_000).toISOString();
      const yearAgo = new Date(Date.now() - 365 * 86400_000).toISOString();
      const [fast] = store.ingest('edge', [ev(falcoPayload({ fp: 'fast', time: ahead }))]).alerts;
      store.ingest('edge', [ev(falcoPayload({ fp: 'backfill', time: yearAgo }))]);
      const list = (await app.inject({ url: '/api/v1/alerts', headers: { authorization: `Bearer ${token}` } })).json() as { alerts: Record<string, unknown>[] };
      const byFp = new Map(list.alerts.map((a) => [a.fingerprint, a]));
      expect(byFp.get('fast')).toMatchObject({ last_seen: ahead, clock_skew: true, last_received_at: expect.stringMatching(/^\d{4}-/) });
      expect(byFp.get('backfill')).toMatchObject({ last_seen: yearAgo });
      expect(byFp.get('backfill')).not.toHaveProperty('clock_skew');
      const detail = (await app.inject({ url: `/api/v1/alerts/${fast!.id}`, headers: { authorization: `Bearer ${token}` } })).json() as {
        alert: Record<string, unknown>;
      };
      expect(detail.alert).toMatchObject({ last_seen: ahead, clock_skew: true });
    } finally {
      await app.close();
      db.close();
    }
  });
});

describe('feed API: requests Node refuses before fastify reads them', () => {
  it("answers headers over the limit (431) and what is not HTTP (400) in Verdict's form", async () => {
    const db = openServerDb(':memory:');
    const app = await buildHttpServer({
      store: new AlertStore(db),
      tokens: new FeedTokens(db),
      log: createRootLogger({ name: 'test', level: 'silent' }),
      ready: () => true,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => socket.end(request));
        let answer = '';
        socket.on('data', (d) => {
          answer += d.toString();
        });
        socket.on('close', () => resolve(answer));
        socket.on('error', reject);
      });
    try {
      const big = await raw(`GET /api/v1/alerts HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(140 * 1024)}\r\n\r\n`);
      expect(big).toMatch(/^HTTP\/1\.1 431 /);
      expect(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4))).toEqual({
        error: 'request_header_fields_too_large',
        message: expect.stringMatching(/over 96 KiB.*send fewer or shorter filters/),
      });
      // A body longer than its Content-Length: the rest is read as a request, which is not one.
      const garbled = await raw(
        'PATCH /api/v1/alerts/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{"status":"resolved"}',
      );
      const starts = [...garbled.matchAll(/HTTP\/1\.1 \d{3} [A-Za-z ]+\r\n/g)].map((m) => m.index);
      const last = garbled.slice(starts.at(-1));
      expect(last).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(last.slice(last.indexOf('\r\n\r\n') + 4))).toEqual({
        error: 'bad_request',
        message: expect.stringMatching(/not valid HTTP\/1\.1.*Content-Length/),
      });
    } finally {
      await app.close();
      db.close();
    }
  });

  it('answers 431 over TLS too, to a client that sends the first 128 KiB of its head and waits (curl does)', async () => {
    const certs = makeCerts(join(tmpdir(), `verdict-feed-tls-${process.pid}`));
    const db = openServerDb(':memory:');
    const app = await buildHttpServer({
      store: new AlertStore(db),
      tokens: new FeedTokens(db),
      log: createRootLogger({ name: 'test', level: 'silent' }),
      ready: () => true,
      tls: { cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    try {
      const start = 'GET /api/v1/alerts HTTP/1.1\r\nHost: localhost\r\nX-Big: ';
      const head = start + 'a'.repeat(128 * 1024 - start.length);
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connectTls({ port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(certs.ca) }, () => socket.write(head));
        let got = '';
        socket.on('data', (d) => {
          got += d.toString();
        });
        socket.on('close', () => resolve(got));
        socket.on('error', reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 431 /);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: 'request_header_fields_too_large' });
    } finally {
      await app.close();
      db.close();
    }
  }, 20_000);
});
