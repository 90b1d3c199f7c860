import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server/server.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import { tempDir } from '../helpers/processes.js';
import { cilium, SECRET, SECRET2, silent } from './helpers.js';
import { Receiver } from './receiver.js';

// /api/v1/admin/integrations on a real server (in this process): scope checks,
// create/update/delete, read-only config integrations, deliveries, redelivery.

describe('admin API for integrations', () => {
  let server: RunningServer;
  let base = '';
  let admin = '';
  let reader = '';
  const rx = new Receiver();
  let healthy = false;

  const call = async (method: string, path: string, body?: unknown, token = admin) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };

  beforeAll(async () => {
    await rx.listen();
    rx.answer = () => (healthy ? { status: 200 } : { status: 500 });
    server = await startServer(
      {
        data_dir: tempDir('verdict-wh-admin-'),
        http_addr: '127.0.0.1:0',
        grpc_addr: '127.0.0.1:0',
        config_poll_interval: 60_000,
        webhooks: parseWebhooksJson({
          allow_private_addresses: ['127.0.0.1'],
          integrations: [{ name: 'from-file', type: 'slack', url: rx.url('/services/T/B/secret-part') }],
        }),
      },
      silent,
    );
    base = `http://${server.httpAddress}`;
    admin = server.tokens.create('admin', 'admin').token;
    reader = server.tokens.create('reader', 'read').token;
  });

  afterAll(async () => {
    await server?.close();
    await rx.close();
  });

  it('needs an admin token', async () => {
    expect((await call('GET', '/api/v1/admin/integrations', undefined, reader)).status).toBe(403);
    expect((await fetch(`${base}/api/v1/admin/integrations`)).status).toBe(401);
    // Who may call is settled before what was sent: a bad id or body without a token is 401, not 400.
    expect((await call('GET', '/api/v1/admin/integrations/hook/deliveries/0', undefined, 'nope')).status).toBe(401);
    expect((await call('POST', '/api/v1/admin/integrations', { name: '' }, 'nope')).status).toBe(401);
  });

  it('documents every integration route in the OpenAPI document, with the admin scope', async () => {
    const doc = (await call('GET', '/api/v1/openapi.json')).body as {
      paths: Record<string, Record<string, { 'x-required-scope'?: string; summary?: string; responses: Record<string, unknown> }>>;
    };
    const ops = Object.entries(doc.paths)
      .filter(([path]) => path.startsWith('/api/v1/admin/integrations'))
      .flatMap(([path, o]) => Object.entries(o).map(([m, op]) => ({ what: `${m} ${path}`, op })));
    expect(ops.map((o) => o.what).sort()).toEqual([
      'delete /api/v1/admin/integrations/{name}',
      'get /api/v1/admin/integrations',
      'get /api/v1/admin/integrations/{name}',
      'get /api/v1/admin/integrations/{name}/deliveries',
      'get /api/v1/admin/integrations/{name}/deliveries/{id}',
      'patch /api/v1/admin/integrations/{name}',
      'post /api/v1/admin/integrations',
      'post /api/v1/admin/integrations/{name}/dead-letters/redeliver',
      'post /api/v1/admin/integrations/{name}/deliveries/{id}/redeliver',
      'post /api/v1/admin/integrations/{name}/enable',
    ]);
    for (const { what, op } of ops) {
      expect(op['x-required-scope'], what).toBe('admin');
      expect(op.summary, what).toBeTruthy();
      expect(Object.keys(op.responses), what).toEqual(expect.arrayContaining(['401', '403']));
    }
  });

  it('lists config integrations as read-only, with the Slack URL redacted', async () => {
    const { status, body } = await call('GET', '/api/v1/admin/integrations');
    expect(status).toBe(200);
    expect(body.integrations).toEqual([
      expect.objectContaining({ name: 'from-file', type: 'slack', origin: 'config', read_only: true, state: 'active', url: `http://127.0.0.1:${rx.port}/…` }),
    ]);
    const patch = await call('PATCH', '/api/v1/admin/integrations/from-file', { enabled: false });
    expect(patch.status).toBe(409);
    expect(patch.body.message).toMatch(/defined in the server config file; change it there/);
    expect((await call('DELETE', '/api/v1/admin/integrations/from-file')).status).toBe(409);
  });

  it('creates, shows (secrets redacted), updates and deletes an integration', async () => {
    const bad = await call('POST', '/api/v1/admin/integrations', {
      name: 'hook',
      type: 'generic',
      url: rx.url(),
      secrets: ['nope'],
      route: { min_severity: 'urgent' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: { path: string }) => i.path)).toEqual(expect.arrayContaining(['secrets[0]', 'route.min_severity']));
    const ssrf = await call('POST', '/api/v1/admin/integrations', {
      name: 'hook',
      type: 'generic',
      url: 'http://169.254.169.254/latest/meta-data',
      secrets: [SECRET],
    });
    expect(ssrf.status).toBe(400);
    expect(ssrf.body.message).toMatch(/link-local.*allow_private_addresses/);
    // Any spelling of a refused address: here cloud metadata through NAT64 (127.0.0.1 alone is allowed).
    const nat64 = await call('POST', '/api/v1/admin/integrations', {
      name: 'hook',
      type: 'generic',
      url: 'http://[64:ff9b::169.254.169.254]/',
      secrets: [SECRET],
    });
    expect(nat64.status).toBe(400);
    expect(nat64.body.issues).toEqual([
      { path: 'url', message: expect.stringMatching(/^refused to deliver to 64:ff9b::a9fe:a9fe: it is a link-local .*through NAT64/) },
    ]);

    const created = await call('POST', '/api/v1/admin/integrations', {
      name: 'hook',
      type: 'generic',
      url: rx.url(),
      secrets: [SECRET],
      timeout: '2s',
      retry_schedule: ['30ms'],
      headers: { 'X-Api-Key': 'receiver-key' },
    });
    expect(created.status).toBe(201);
    expect(created.body.integration).toMatchObject({
      name: 'hook',
      origin: 'api',
      read_only: false,
      secrets: ['whsec_…LaSw'],
      timeout: '2s',
      retry_schedule: ['30ms'],
      state: 'active',
      headers: { 'X-Api-Key': '…' },
    });
    expect(JSON.stringify(created.body)).not.toContain('receiver-key');
    expect(JSON.stringify(created.body)).not.toContain(SECRET);
    expect((await call('POST', '/api/v1/admin/integrations', { name: 'hook', type: 'slack', url: rx.url() })).status).toBe(409);

    // Rotation: add a second secret; the redacted first one stands for itself.
    const rotated = await call('PATCH', '/api/v1/admin/integrations/hook', {
      secrets: ['whsec_…LaSw', SECRET2],
      route: { min_severity: 'high' },
      headers: { 'X-Api-Key': '…', 'X-Team': 'sec' },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.body.integration).toMatchObject({ secrets: ['whsec_…LaSw', `whsec_…${SECRET2.slice(-4)}`], route: { min_severity: 'high' }, timeout: '2s' });
    expect(server.webhooks.registry.byName('hook')!.spec.secrets).toEqual([SECRET, SECRET2]);
    expect(server.webhooks.registry.byName('hook')!.spec.headers).toEqual({ 'X-Api-Key': 'receiver-key', 'X-Team': 'sec' });
    expect((await call('GET', '/api/v1/admin/integrations/nope')).status).toBe(404);
  });

  it('refuses env: and file: references, which would read the server host, and quotes nothing they name', async () => {
    const refused =
      /^env: and file: references read the server's own environment and files, so only the server config file may use them; send the (URL|secret \(whsec_…\)|key) itself$/;
    for (const body of [
      { name: 'leak', type: 'alertmanager', url: 'file:/etc/passwd' },
      { name: 'leak', type: 'alertmanager', url: 'file:/nonexistent' },
      { name: 'leak', type: 'alertmanager', url: 'env:PATH' },
      { name: 'leak', type: 'alertmanager', url: rx.url(), secrets: ['env:HOME'] },
      { name: 'leak', type: 'alertmanager', url: rx.url(), key: 'file:/etc/hostname' },
    ]) {
      const res = await call('POST', '/api/v1/admin/integrations', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.issues, JSON.stringify(body)).toEqual([
        { path: expect.stringMatching(/^(url|secrets\[0\]|key)$/), message: expect.stringMatching(refused) },
      ]);
      expect(res.body.message).not.toMatch(/root|ENOENT|\/usr\/bin|\/root/);
    }
    expect((await call('GET', '/api/v1/admin/integrations/leak')).status).toBe(404);

    // One made through the API by an older version keeps its reference but is not read: its tries fail, saying what to do.
    const [legacy] = parseWebhooksJson({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'legacy', type: 'alertmanager', url: rx.url(), key: 'env:HOME' }],
    }).integrations;
    const made = server.webhooks.registry.create(legacy!, 'api');
    expect(() => server.webhooks.registry.credentials(made)).toThrow(/made through the admin API, which may not use env: or file: references; PATCH/);
    const patch = await call('PATCH', '/api/v1/admin/integrations/legacy', { enabled: true });
    expect(patch.status).toBe(400);
    expect(patch.body.issues).toEqual([{ path: 'key', message: expect.stringMatching(refused) }]);
    expect((await call('PATCH', '/api/v1/admin/integrations/legacy', { key: 'receiver-key' })).status).toBe(200);
    expect(server.webhooks.registry.credentials(server.webhooks.registry.byName('legacy')!).key).toBe('receiver-key');
    expect((await call('DELETE', '/api/v1/admin/integrations/legacy')).status).toBe(200);
  });

  it('names the fields of a bad body without line numbers', async () => {
    const bad = await call('POST', '/api/v1/admin/integrations', {
      name: 'x',
      type: 'generic',
      url: rx.url(),
      route: { min_severity: 'urgent' },
      timeout: '5d',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toBe(
      'request body: route.min_severity: must be one of "critical", "high", "medium", "low", "info"; got "urgent"; ' +
        'request body: timeout: must be a duration such as 500ms, 10s, 5m or 1h; days (d) are not a unit here: write 120h for 5d',
    );
    const unsigned = await call('POST', '/api/v1/admin/integrations', { name: 'x', type: 'generic', url: rx.url() });
    expect(unsigned.body.issues).toEqual([{ path: 'secrets', message: expect.stringMatching(/^a generic webhook is signed/) }]);
  });

  it('lists dead letters and redelivers them', async () => {
    server.store.ingest('edge', [{ id: 'admin-api-1', payload: cilium({ severity: 'critical' }) }]);
    // 'from-file' and 'hook' both get it; both fail (500) until the schedule ends.
    const dead = async () => (await call('GET', '/api/v1/admin/integrations/hook/deliveries?state=dead')).body.deliveries as Record<string, any>[];
    for (let i = 0; i < 100 && (await dead()).length === 0; i++) await new Promise((ok) => setTimeout(ok, 50));
    const [d] = await dead();
    expect(d).toMatchObject({ event: 'triggered', state: 'dead', attempts: 2, last_status: 500, next_attempt_at: null });
    const detail = await call('GET', `/api/v1/admin/integrations/hook/deliveries/${d!.id}`);
    expect(detail.body.delivery.body).toMatchObject({ type: 'alert.triggered' });
    expect(detail.body.delivery.attempt_log).toHaveLength(2);
    expect((await call('GET', `/api/v1/admin/integrations/from-file/deliveries/${d!.id}`)).status).toBe(404);

    healthy = true;
    const before = rx.requests.length;
    const re = await call('POST', `/api/v1/admin/integrations/hook/deliveries/${d!.id}/redeliver`);
    expect(re.status).toBe(202);
    expect(re.body.message).toMatch(/same webhook-id/);
    await rx.waitFor((r) => r.slice(before).some((q) => q.headers['webhook-id'] === d!.webhook_id));
    const again = await call('POST', `/api/v1/admin/integrations/hook/deliveries/${d!.id}/redeliver`);
    expect([202, 409]).toContain(again.status);

    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/verdict_webhook_delivered_total\{integration="hook"\} [1-9]/);
    expect(metrics).toMatch(/verdict_webhook_failed_attempts_total\{integration="hook",reason="http_5xx"\} [1-9]/);
    expect(metrics).toMatch(/verdict_webhook_dead_lettered_total\{integration="hook"\} [1-9]/);
    expect(metrics).toMatch(/verdict_webhook_retries_total\{integration="hook"\} [1-9]/);
    expect(metrics).toMatch(/verdict_webhook_attempt_duration_seconds_count\{integration="hook"\} [1-9]/);
    expect(metrics).toMatch(/verdict_webhook_deliveries\{integration="hook",state="pending"\} \d/);

    const del = await call('DELETE', '/api/v1/admin/integrations/hook');
    expect(del.body).toMatchObject({ deleted: true });
    expect((await call('GET', '/api/v1/admin/integrations')).body.integrations.map((i: { name: string }) => i.name)).toEqual(['from-file']);
  });
});
