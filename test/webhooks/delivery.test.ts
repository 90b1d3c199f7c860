import { afterEach, describe, expect, it } from 'vitest';
import { enqueueForStatusChange } from '../../src/server/webhooks/service.js';
import { cilium, falco, FAST, harness, SECRET, SECRET2, type Harness } from './helpers.js';
import { Closers } from '../../src/shared/lifecycle/closers.js';
import { type Receiver, startReceiver } from './receiver.js';
import { verifyStandardWebhook } from './standard-webhooks.js';
import { disabledTotal } from '../../src/server/webhooks/metrics.js';
import { until } from '../helpers/processes.js';

// Delivery against real HTTP receivers on loopback: signing, retries,
// timeouts, 410, dead letters, Retry-After, routing, grouping, concurrency.

let h: Harness | undefined;
/** What a test opened, closed after it. */
let closers = new Closers();

const receiver = () => startReceiver(closers);

function generic(r: Receiver, extra: Record<string, unknown> = {}) {
  return { name: 'hook', type: 'generic', url: r.url(), secrets: [SECRET], ...FAST, ...extra };
}

afterEach(async () => {
  await h?.close();
  h = undefined;
  const c = closers;
  closers = new Closers();
  await c.close();
});

const deliveries = (name = 'hook', state?: 'pending' | 'delivered' | 'dead') => {
  const i = h!.svc.registry.byName(name)!;
  return h!.svc.outbox.list({ integrationId: i.id, limit: 100, ...(state ? { state } : {}) });
};

describe('generic webhook', () => {
  it('is signed so an independent Standard Webhooks verifier accepts it, with both secrets during rotation', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { secrets: [SECRET, SECRET2], headers: { 'X-Team': 'sec' } })] });
    const a = h.ingest(cilium());
    await r.waitForCount(1);
    const req = r.requests[0]!;
    await verifyStandardWebhook(SECRET, req.headers, req.body);
    await verifyStandardWebhook(SECRET2, req.headers, req.body);
    await expect(verifyStandardWebhook(`whsec_${Buffer.alloc(32, 1).toString('base64')}`, req.headers, req.body)).rejects.toThrow(/no matching signature/);
    await expect(verifyStandardWebhook(SECRET, req.headers, `${req.body} `)).rejects.toThrow(/no matching signature/);
    expect(req.headers['webhook-id']).toMatch(/^msg_[\w-]{20,}$/);
    expect(Math.abs(Number(req.headers['webhook-timestamp']) - Date.now() / 1000)).toBeLessThan(5);
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers['user-agent']).toMatch(/^Verdict\//);
    expect(req.headers['x-team']).toBe('sec');
    expect(req.headers.authorization).toBeUndefined();
    expect(req.method).toBe('POST');
    expect(r.json(0)).toMatchObject({ type: 'alert.triggered', data: { integration: 'hook', alerts: [{ id: a.id }] } });
  });

  it('retries a 500 and succeeds, with the same webhook-id and body on every try', async () => {
    const r = await receiver();
    r.answer = (q) => (q.n === 1 ? { status: 500, body: 'database down' } : { status: 200 });
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r)] });
    h.ingest(cilium());
    await r.waitForCount(2);
    const [first, second] = r.requests;
    expect(second!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(second!.body).toBe(first!.body);
    await verifyStandardWebhook(SECRET, second!.headers, second!.body);
    await new Promise((ok) => setTimeout(ok, 100));
    const [d] = deliveries();
    expect(d).toMatchObject({ state: 'delivered', attempts: 2, last_status: 200 });
    expect(h.svc.outbox.attempts(d!.id)).toMatchObject([
      { status: 500, error: 'HTTP 500 Internal Server Error: database down' },
      { status: 200, error: null },
    ]);
    expect(r.requests).toHaveLength(2);
  });

  it('gives up on a hanging endpoint after the timeout and tries again', async () => {
    const r = await receiver();
    r.answer = (q) => (q.n === 1 ? 'hang' : { status: 204 });
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { timeout: '300ms' })] });
    h.ingest(cilium());
    await r.waitForCount(2);
    const gap = r.requests[1]!.at - r.requests[0]!.at;
    expect(gap).toBeGreaterThanOrEqual(300);
    expect(r.requests[1]!.headers['webhook-id']).toBe(r.requests[0]!.headers['webhook-id']);
    await new Promise((ok) => setTimeout(ok, 100));
    const [d] = deliveries();
    expect(d).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(h.svc.outbox.attempts(d!.id)[0]!.error).toMatch(/no complete answer within 300 ms/);
  });

  it('disables the endpoint on 410, keeps the delivery as a dead letter, and resumes after enable + redeliver', async () => {
    const r = await receiver();
    r.answer = (q) => (q.n === 1 ? { status: 410 } : { status: 200 });
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r)] });
    h.ingest(cilium());
    await r.waitForCount(1);
    await new Promise((ok) => setTimeout(ok, 150));
    expect(r.requests).toHaveLength(1); // 410 is not retried
    expect(h.svc.registry.byName('hook')!.disabled_reason).toMatch(/410 Gone/);
    const [dead] = deliveries('hook', 'dead');
    expect(dead).toMatchObject({ state: 'dead', attempts: 1, last_status: 410 });
    // Disabled: new alerts record nothing for it.
    h.ingest(cilium());
    expect(deliveries()).toHaveLength(1);
    h.svc.registry.enable('hook');
    expect(h.svc.outbox.redeliver(dead!.id)).toBe(true);
    await r.waitForCount(2);
    expect(r.requests[1]!.headers['webhook-id']).toBe(dead!.webhook_id);
    await new Promise((ok) => setTimeout(ok, 100));
    expect(h.svc.outbox.get(dead!.id)).toMatchObject({ state: 'delivered', attempts: 1 });
  });

  it('disables once when tries in flight together all get the 410', async () => {
    const r = await receiver();
    // All three tries are in flight before any answer comes.
    r.answer = async () => {
      await r.waitForCount(3);
      return { status: 410 };
    };
    const count = async () => (await disabledTotal.get()).values.find((v) => v.labels.integration === 'gone3')?.value ?? 0;
    const before = await count();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { name: 'gone3', concurrency: 3 })] });
    for (let i = 0; i < 3; i++) h.ingest(cilium());
    await until(() => (deliveries('gone3', 'dead').length === 3 ? true : undefined), 10_000, 'three dead letters');
    expect(await count()).toBe(before + 1);
    const i = h.svc.registry.byName('gone3')!;
    // The reason and the time are those of the first 410.
    expect(i.disabled_reason).toMatch(/410 Gone/);
    const disabledAt = i.disabled_at;
    await new Promise((ok) => setTimeout(ok, 100));
    expect(h.svc.registry.byName('gone3')!.disabled_at).toBe(disabledAt);
  });

  it('dead-letters after the last try of the schedule, and redelivers with the same webhook-id', async () => {
    const r = await receiver();
    let healthy = false;
    r.answer = () => (healthy ? { status: 200 } : { status: 503 });
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { retry_schedule: ['20ms', '40ms'] })] });
    h.ingest(cilium());
    await r.waitForCount(3);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(r.requests).toHaveLength(3);
    const [d] = deliveries('hook', 'dead');
    expect(d).toMatchObject({ attempts: 3, last_status: 503 });
    expect(new Set(r.requests.map((q) => q.headers['webhook-id']))).toEqual(new Set([d!.webhook_id]));
    healthy = true;
    h.svc.outbox.redeliver(d!.id);
    await r.waitForCount(4);
    expect(r.requests[3]!.headers['webhook-id']).toBe(d!.webhook_id);
  });

  it('honours Retry-After over a shorter schedule', async () => {
    const r = await receiver();
    r.answer = (q) => (q.n === 1 ? { status: 429, headers: { 'retry-after': '1' } } : { status: 200 });
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r)] });
    h.ingest(cilium());
    await r.waitForCount(2, 5000);
    expect(r.requests[1]!.at - r.requests[0]!.at).toBeGreaterThanOrEqual(950);
  });

  it('refuses a loopback endpoint the operator did not allow when the config is loaded, and says how to allow it', async () => {
    const r = await receiver();
    // A literal IP and localhost are known without DNS: refused at load, as every delivery to them would be.
    // Names are checked inside the socket's lookup (ssrf.test.ts), since their addresses may change.
    expect(() => harness({ integrations: [generic(r, { retry_schedule: [] })] })).toThrow(
      /integrations\[0\]\.url: refused to deliver to 127\.0\.0\.1: it is a loopback address.*add "127\.0\.0\.1".*webhooks\.allow_private_addresses/,
    );
    const url = `http://localhost:${r.port}/hook`;
    expect(() => harness({ integrations: [generic(r, { url })] })).toThrow(
      /integrations\[0\]\.url: refused to deliver to localhost \(127\.0\.0\.1\): it is a loopback address.*webhooks\.allow_private_addresses/,
    );
    expect(r.requests).toHaveLength(0);
    h = harness({ allow_private_addresses: ['localhost'], integrations: [generic(r, { url })] });
    h.ingest(cilium());
    await r.waitForCount(1);
    await verifyStandardWebhook(SECRET, r.requests[0]!.headers, r.requests[0]!.body);
  });

  it('keeps at most `concurrency` tries in flight per endpoint', async () => {
    const r = await receiver();
    let now = 0;
    let peak = 0;
    r.answer = async () => {
      peak = Math.max(peak, ++now);
      await new Promise((ok) => setTimeout(ok, 100));
      now--;
      return { status: 200 };
    };
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { concurrency: 2 })] });
    for (let i = 0; i < 8; i++) h.ingest(cilium());
    await r.waitForCount(8);
    expect(peak).toBe(2);
  });
});

describe('what triggers a delivery', () => {
  it('sends an alert once when it opens, not on every repeat; count milestones once each', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { repeat_milestones: [3, 10] })] });
    const p = cilium();
    for (let i = 0; i < 5; i++) h.ingest({ ...p, count: 1 });
    await r.waitForCount(2);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(
      r.requests.map((q) => [r.json<{ type: string }>(q.n - 1).type, r.json<{ data: { alerts: { count: number }[] } }>(q.n - 1).data.alerts[0]!.count]),
    ).toEqual([
      ['alert.triggered', 1],
      ['alert.repeated', 3],
    ]);
    // A jump past both milestones sends one delivery, for the higher one.
    h.ingest({ ...p, count: 20 });
    await r.waitForCount(3);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(r.requests).toHaveLength(3);
    expect(r.json<{ data: { alerts: { count: number }[] } }>(2).data.alerts[0]!.count).toBe(25);
  });

  it('sends resolved once, only to integrations that were told about the alert', async () => {
    const [all, criticalOnly] = [await receiver(), await receiver()];
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [generic(all, { name: 'all' }), generic(criticalOnly, { name: 'critical', route: { min_severity: 'critical' } })],
    });
    const a = h.ingest(cilium({ severity: 'high' }));
    await all.waitForCount(1);
    h.store.setStatus(a.id, 'resolved', 'test');
    await all.waitForCount(2);
    const resolved = all.json<{ type: string; data: { alerts: { status: string; resolved_at: string }[] } }>(1);
    expect(resolved.type).toBe('alert.resolved');
    expect(resolved.data.alerts[0]).toMatchObject({ status: 'resolved', resolved_at: expect.stringMatching(/^\d{4}-/) });
    // Recording it again (the feed's transaction and the store's event both may) is a no-op.
    expect(h.db.transaction(() => enqueueForStatusChange(h!.db, h!.store.get(a.id)!))()).toBe(0);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(all.requests).toHaveLength(2);
    expect(criticalOnly.requests).toHaveLength(0);
  });

  it('records deliveries in the store transaction: a rolled-back ingest leaves no delivery', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r)] });
    let fail = true;
    h.store.onChange(() => {
      if (fail) throw new Error('disk full');
    });
    expect(() => h!.ingest(cilium())).toThrow(/disk full/);
    expect(deliveries()).toHaveLength(0);
    fail = false;
    h.ingest(cilium());
    await r.waitForCount(1);
    await new Promise((ok) => setTimeout(ok, 100));
    expect(r.requests).toHaveLength(1);
  });

  it('groups alerts within group_window into one delivery', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r, { group_window: '300ms' })] });
    const started = Date.now();
    const ids = [h.ingest(cilium()).id, h.ingest(falco()).id, h.ingest(cilium()).id];
    await r.waitForCount(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    await new Promise((ok) => setTimeout(ok, 200));
    expect(r.requests).toHaveLength(1);
    expect(r.json<{ data: { alerts: { id: number }[] } }>(0).data.alerts.map((a) => a.id)).toEqual(ids);
    await verifyStandardWebhook(SECRET, r.requests[0]!.headers, r.requests[0]!.body);
  });
});

describe('routing', () => {
  it('gives each integration only the alerts its route selects', async () => {
    const routes: Record<string, Record<string, unknown>> = {
      high: { min_severity: 'high' },
      falco: { sources: ['falco'] },
      db: { namespaces: ['db'] },
      payments: { policies: ['shop/payments-*'] },
      shell: { rules: ['Terminal shell in container'] },
      eu: { agents: ['prod-eu'] },
      combo: { min_severity: 'medium', sources: ['cilium'], namespaces: ['shop'], agents: ['prod-*'] },
    };
    const rx: Record<string, Receiver> = {};
    for (const k of Object.keys(routes)) rx[k] = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: Object.entries(routes).map(([k, route]) => generic(rx[k]!, { name: k, route })) });
    const alerts = {
      lowShop: h.ingest(cilium({ severity: 'low' }), 'prod-eu'),
      highDb: h.ingest(cilium({ severity: 'high', namespace: 'db', policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'db', name: 'pg' }] }), 'prod-us'),
      payments: h.ingest(cilium({ severity: 'medium' }), 'staging'),
      shell: h.ingest(falco({ severity: 'critical' }), 'prod-us'),
      otherRule: h.ingest(falco({ severity: 'info', rule: 'Write below etc', namespace: 'db' }), 'prod-eu'),
    };
    const want: Record<string, (keyof typeof alerts)[]> = {
      high: ['highDb', 'shell'],
      falco: ['shell', 'otherRule'],
      db: ['highDb', 'otherRule'],
      payments: ['lowShop', 'payments'],
      shell: ['shell'],
      eu: ['lowShop', 'otherRule'],
      combo: [],
    };
    await Promise.all(Object.entries(want).map(([k, w]) => rx[k]!.waitForCount(w.length)));
    await new Promise((ok) => setTimeout(ok, 300));
    for (const [k, w] of Object.entries(want)) {
      const got = rx[k]!.requests.map((q) => (JSON.parse(q.body) as { data: { alerts: { id: number }[] } }).data.alerts[0]!.id).sort((x, y) => x - y);
      expect({ [k]: got }).toEqual({ [k]: w.map((n) => alerts[n].id).sort((x, y) => x - y) });
    }
  });
});

describe('enqueueOnStore: false (deliveries recorded by another path, e.g. Kafka mode)', () => {
  it('records nothing from the store, and delivers what the outbox is given', async () => {
    const { AlertStore } = await import('../../src/server/store/alert-store.js');
    const { openServerDb } = await import('../../src/server/store/server-db.js');
    const { startWebhooks } = await import('../../src/server/webhooks/service.js');
    const { parseWebhooksJson } = await import('../../src/shared/config/webhooks-config.js');
    const { silent } = await import('./helpers.js');
    const r = await receiver();
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const svc = startWebhooks({
      db,
      store,
      log: silent,
      enqueueOnStore: false,
      worker: { jitter: false },
      config: parseWebhooksJson({ allow_private_addresses: ['127.0.0.1'], integrations: [generic(r)] }),
    });
    try {
      const a = store.ingest('edge', [{ id: 'no-hook-1', payload: cilium() }]).alerts[0]!;
      store.setStatus(a.id, 'resolved', 'test');
      await new Promise((ok) => setTimeout(ok, 200));
      expect(r.requests).toHaveLength(0);
      const b = store.ingest('edge', [{ id: 'no-hook-2', payload: cilium() }]).alerts[0]!;
      db.transaction(() => svc.outbox.enqueueForAlerts([b]))();
      await r.waitForCount(1);
      expect(r.json<{ data: { alerts: { id: number }[] } }>(0).data.alerts[0]!.id).toBe(b.id);
    } finally {
      await svc.close();
      db.close();
    }
  });
});
