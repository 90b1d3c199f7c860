import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { cilium, falco, FAST, harness, SECRET, type Harness } from './helpers.js';
import { Closers } from '../../src/shared/lifecycle/closers.js';
import { startReceiver } from './receiver.js';
import { alertsOf } from '../../src/modules/gitops/report-service.js';
import type { SyncReport } from '../../src/gen/verdict/gitops.js';

// Each format as its receiver sees it, field by field: GitLab's HTTP alert
// integration, Alertmanager's webhook v4, Slack incoming webhooks, and
// Verdict's own generic payload.

let h: Harness | undefined;
/** What a test opened, closed after it. */
let closers = new Closers();

const receiver = () => startReceiver(closers);

afterEach(async () => {
  await h?.close();
  h = undefined;
  const c = closers;
  closers = new Closers();
  await c.close();
});

const EXTERNAL = 'https://verdict.example.com';

describe('GitLab HTTP alert integration', () => {
  it('sends title, description, start_time, severity, fingerprint, monitoring_tool, hosts with the Bearer key, and end_time on resolve', async () => {
    const r = await receiver();
    process.env.VERDICT_TEST_GITLAB_KEY = 'gl-alert-key-123';
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      external_url: EXTERNAL,
      integrations: [{ name: 'gitlab', type: 'gitlab', url: r.url('/g/p/alerts/notify/verdict/abc.json'), key: 'env:VERDICT_TEST_GITLAB_KEY', ...FAST }],
    });
    const p = cilium({ description: 'x'.repeat(1500) });
    const a = h.ingest(p, 'prod');
    await r.waitForCount(1);
    expect(r.requests[0]!.path).toBe('/g/p/alerts/notify/verdict/abc.json');
    expect(r.requests[0]!.headers.authorization).toBe('Bearer gl-alert-key-123');
    expect(r.requests[0]!.headers['webhook-signature']).toBeUndefined();
    expect(r.json(0)).toEqual({
      title: p.title,
      description: `${'x'.repeat(999)}…`,
      start_time: p.first_seen,
      severity: 'high',
      fingerprint: `prod/${p.fingerprint}`,
      monitoring_tool: 'Verdict (Cilium)',
      service: 'prod/shop',
      hosts: ['shop/frontend-7d9f8-1', 'shop/payments-5c6b-0'],
      verdict_alert_id: a.id,
      verdict_count: 1,
      verdict_url: `${EXTERNAL}/api/v1/alerts/${a.id}`,
    });
    h.store.setStatus(a.id, 'resolved', 'test');
    await r.waitForCount(2);
    const resolved = r.json(1);
    // The same alert, field for field, plus end_time: GitLab resolves the open alert with this fingerprint.
    expect(resolved).toEqual({ ...r.json(0), end_time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/) });
    expect(Date.parse(resolved.end_time as string)).toBeGreaterThanOrEqual(Date.parse(p.first_seen));
    expect(Date.parse(resolved.end_time as string)).toBeLessThanOrEqual(Date.now());
    expect(r.requests[1]!.headers.authorization).toBe('Bearer gl-alert-key-123');
    expect(r.json(0).end_time).toBeUndefined();
    delete process.env.VERDICT_TEST_GITLAB_KEY;
  });

  it('cuts fields to what GitLab accepts (title 200, description 1000, service 100, hosts 255 joined), by character', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'gitlab', type: 'gitlab', url: r.url(), key: 'k', ...FAST }] });
    const long = (c: string, n: number) => c.repeat(n);
    // The store keeps at most 200 UTF-16 units of a title and never half an emoji: 99 of them here.
    const p = cilium({ title: `a${long('🔥', 150)}`, description: long('é', 2000), cluster: long('c', 80), namespace: long('n', 63) });
    p.cilium!.source.pod = long('a', 200);
    p.cilium!.destination.pod = long('b', 200);
    h.ingest(p, 'prod');
    await r.waitForCount(1);
    const doc = r.json<{ title: string; description: string; service: string; hosts: string[] }>(0);
    const chars = (x: string) => Array.from(x).length;
    expect(doc.title).toBe(`a${long('🔥', 99)}`);
    expect(chars(doc.description)).toBe(1000);
    expect(chars(doc.service)).toBe(100);
    expect(doc.service.startsWith(long('c', 80))).toBe(true);
    expect(doc.hosts).toEqual([`shop/${long('a', 200)}`, `shop/${long('b', 44)}…`]);
    expect(chars(doc.hosts.join(''))).toBe(255);
  });

  it('sends valid Unicode when an agent sent half an emoji', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'gitlab', type: 'gitlab', url: r.url(), key: 'k', ...FAST }] });
    // JSON allows "\ud83d" alone; GitLab's parser refuses it.
    h.ingest(cilium({ title: 'half \ud83d here', description: 'tail \udd25' }), 'prod');
    await r.waitForCount(1);
    const doc = r.json<{ title: string; description: string }>(0);
    expect(doc.title).toBe('half \uFFFD here');
    expect(doc.description).toBe('tail \uFFFD');
    expect(r.requests[0]!.body).not.toMatch(/\\ud[89a-f]/i);
  });

  it('names Falco as the tool and the node as the host', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'gitlab', type: 'gitlab', url: r.url(), key: 'k', ...FAST }] });
    h.ingest(falco());
    await r.waitForCount(1);
    expect(r.json(0)).toMatchObject({ monitoring_tool: 'Verdict (Falco)', hosts: ['node-1'], severity: 'critical' });
  });
});

interface AmPayload {
  version: string;
  groupKey: string;
  truncatedAlerts: number;
  status: string;
  receiver: string;
  groupLabels: Record<string, string>;
  commonLabels: Record<string, string>;
  commonAnnotations: Record<string, string>;
  externalURL: string;
  alerts: {
    status: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    startsAt: string;
    endsAt: string;
    generatorURL: string;
    fingerprint: string;
  }[];
}

describe('Alertmanager webhook v4', () => {
  it('sends the v4 document with firing, then resolved, for one alert', async () => {
    const r = await receiver();
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      external_url: EXTERNAL,
      integrations: [{ name: 'am', type: 'alertmanager', url: r.url(), ...FAST }],
    });
    const p = cilium();
    const a = h.ingest(p, 'prod');
    await r.waitForCount(1);
    const labels = {
      direction: 'ingress',
      app_kubernetes_io_name: 'payments',
      alertname: 'CiliumPolicyDrop',
      severity: 'high',
      source: 'cilium',
      agent: 'prod',
      cluster: 'prod',
      verdict_fingerprint: p.fingerprint,
      namespace: 'shop',
      policy: 'shop/payments-ingress',
    };
    const annotations = {
      summary: p.title,
      description: p.description,
      verdict_alert_id: String(a.id),
      verdict_url: `${EXTERNAL}/api/v1/alerts/${a.id}`,
    };
    const fp = createHash('sha256').update(`prod/${p.fingerprint}`).digest('hex').slice(0, 16);
    expect(r.json<AmPayload>(0)).toEqual({
      version: '4',
      groupKey: `{}/{verdict_integration="am"}:{agent="prod",verdict_fingerprint="${p.fingerprint}"}`,
      truncatedAlerts: 0,
      status: 'firing',
      receiver: 'am',
      groupLabels: { agent: 'prod', verdict_fingerprint: p.fingerprint },
      commonLabels: labels,
      commonAnnotations: annotations,
      externalURL: EXTERNAL,
      alerts: [
        {
          status: 'firing',
          labels,
          annotations,
          startsAt: p.first_seen,
          endsAt: '0001-01-01T00:00:00Z',
          generatorURL: `${EXTERNAL}/api/v1/alerts/${a.id}`,
          fingerprint: fp,
        },
      ],
    });
    h.store.setStatus(a.id, 'resolved', 'test');
    await r.waitForCount(2);
    const res = r.json<AmPayload>(1);
    expect(res.status).toBe('resolved');
    expect(res.groupKey).toBe(r.json<AmPayload>(0).groupKey);
    expect(res.alerts[0]).toMatchObject({ status: 'resolved', fingerprint: fp, startsAt: p.first_seen });
    expect(res.alerts[0]!.endsAt).toMatch(/^\d{4}-\d\d-\d\dT/);
  });

  it('puts a group window into one document with common labels', async () => {
    const r = await receiver();
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'am', type: 'alertmanager', url: r.url(), group_window: '200ms', ...FAST }] });
    h.ingest(falco(), 'prod');
    h.ingest(falco({ rule: 'Write below etc', severity: 'high' }), 'prod');
    await r.waitForCount(1);
    const doc = r.json<AmPayload>(0);
    expect(doc.alerts.map((x) => x.labels.alertname)).toEqual(['Terminal shell in container', 'Write below etc']);
    expect(doc.groupLabels).toEqual({});
    expect(doc.groupKey).toBe(`{}/{verdict_integration="am",verdict_delivery="${r.requests[0]!.headers['webhook-id']}"}:{}`);
    expect(doc.commonLabels).toEqual({ source: 'falco', agent: 'prod', cluster: 'prod', namespace: 'shop', pod: 'web-1', container: 'web' });
    expect(doc.externalURL).toBe('');
  });

  it("does not resolve, under a grouped firing notification's groupKey, a group that still has firing alerts", async () => {
    // A grouped delivery carries one event's alerts of one window, not Alertmanager's whole
    // group: a receiver keying incidents on groupKey (PagerDuty, Opsgenie) must not see one
    // alert's `resolved` close the incident its firing group opened.
    const r = await receiver();
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'grp', type: 'alertmanager', url: r.url(), group_window: '300ms', ...FAST }],
    });
    const alerts = [1, 2, 3, 4].map(() => h!.ingest(falco(), 'prod'));
    await r.waitForCount(1);
    const firing = r.json<AmPayload>(0);
    expect(firing.status).toBe('firing');
    expect(firing.alerts).toHaveLength(4);
    h.store.setStatus(alerts[0]!.id, 'resolved', 'test');
    await r.waitForCount(2);
    const resolved = r.json<AmPayload>(1);
    expect(resolved.alerts.map((x) => [x.status, x.labels.verdict_fingerprint])).toEqual([['resolved', alerts[0]!.fingerprint]]);
    expect(resolved.status).toBe('resolved');
    expect(resolved.groupKey).not.toBe(firing.groupKey);
    expect(r.requests[1]!.headers['webhook-id']).not.toBe(r.requests[0]!.headers['webhook-id']);
  });
});

describe('GitOps alerts (raised by the server from sync reports)', () => {
  /** A sync report's alerts as the GitOps module raises them: one failed object, or one object put back after drift. */
  const gitops = (drift: boolean) => {
    const report: SyncReport = {
      project_id: 'group/app',
      commit_id: 'abc123',
      ok: drift,
      error: '',
      applied: 1,
      changed: drift ? 1 : 0,
      unchanged: 0,
      pruned: 0,
      failed: drift ? 0 : 1,
      duration_ms: 10,
      drift_corrected: drift,
      objects: [
        { object: 'apps/Deployment shop/web', source: 'web.yaml', action: drift ? 'configured' : 'failed', reason: drift ? '' : 'admission webhook denied' },
      ],
      finished_at: new Date().toISOString(),
    };
    return [...alertsOf('prod', report, new Date().toISOString()).values()][0]!;
  };

  it('are named GitOps in GitLab (monitoring_tool) and in Alertmanager (alertname), not Cilium', async () => {
    const gl = await receiver();
    const am = await receiver();
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [
        { name: 'gitlab', type: 'gitlab', url: gl.url(), key: 'k', ...FAST },
        { name: 'am', type: 'alertmanager', url: am.url(), ...FAST },
      ],
    });
    const failed = gitops(false);
    h.ingest(failed, 'prod');
    await gl.waitForCount(1);
    await am.waitForCount(1);
    expect(gl.json(0)).toMatchObject({ title: failed.title, monitoring_tool: 'Verdict (GitOps)', hosts: [], service: 'shop' });
    expect(am.json<AmPayload>(0).alerts[0]!.labels).toEqual({
      project: 'group/app',
      commit: 'abc123',
      object: 'apps/Deployment shop/web',
      file: 'web.yaml',
      reason: 'admission webhook denied',
      alertname: 'GitOpsSyncFailed',
      severity: 'high',
      source: 'gitops',
      agent: 'prod',
      cluster: '',
      verdict_fingerprint: failed.fingerprint,
      namespace: 'shop',
      rule: 'gitops-sync-failed',
    });
    h.ingest(gitops(true), 'prod');
    await gl.waitForCount(2);
    await am.waitForCount(2);
    expect(gl.json(1)).toMatchObject({ monitoring_tool: 'Verdict (GitOps)' });
    expect(am.json<AmPayload>(1).alerts[0]!.labels).toMatchObject({ alertname: 'GitOpsDriftCorrected', source: 'gitops', rule: 'gitops-drift-corrected' });
  });
});

describe('Slack incoming webhook', () => {
  it('sends text and blocks, escaping Slack control characters', async () => {
    const r = await receiver();
    // The URL is the secret, so it comes from the environment here.
    process.env.VERDICT_TEST_SLACK_URL = r.url('/services/T000/B000/XXXX');
    h = harness({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'slack', type: 'slack', url: 'env:VERDICT_TEST_SLACK_URL', ...FAST }] });
    delete process.env.VERDICT_TEST_SLACK_URL;
    h.ingest(cilium({ title: 'Drop <frontend> & co', description: 'd' }), 'prod');
    await r.waitForCount(1);
    expect(r.requests[0]!.path).toBe('/services/T000/B000/XXXX');
    expect(r.json(0)).toEqual({
      text: '[HIGH] Drop &lt;frontend&gt; &amp; co',
      blocks: [
        { type: 'section', text: { type: 'mrkdwn', text: ':large_orange_circle: *[HIGH]* Drop &lt;frontend&gt; &amp; co\nd' } },
        { type: 'context', elements: [{ type: 'mrkdwn', text: 'cluster `prod` · namespace `shop` · agent `prod` · cilium · seen 1×' }] },
      ],
    });
  });
});

describe('Slack message limits', () => {
  it("keeps every text within Slack's 3000 characters, whatever the agent sent, and marks a resolved alert", async () => {
    const r = await receiver();
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      external_url: EXTERNAL,
      integrations: [{ name: 'slack', type: 'slack', url: r.url('/services/T/B/X'), ...FAST }],
    });
    const a = h.ingest(cilium({ title: '<&>'.repeat(2000), description: '&'.repeat(5000), cluster: 'c'.repeat(4000) }), 'prod');
    await r.waitForCount(1);
    type Msg = { text: string; blocks: { type: string; text?: { text: string }; elements?: { text: string }[] }[] };
    const texts = (m: Msg) => [
      m.text,
      ...m.blocks.flatMap((b) => [b.text?.text, ...(b.elements ?? []).map((e) => e.text)]).filter((x): x is string => x !== undefined),
    ];
    const msg = r.json<Msg>(0);
    for (const t of texts(msg)) {
      expect(t.length).toBeLessThanOrEqual(3000);
      // Cut between entities, never inside one.
      expect(t.replace(/&(amp|lt|gt);/g, '')).not.toMatch(/&/);
    }
    expect(msg.blocks[0]!.text!.text).toMatch(
      new RegExp(`^:large_orange_circle: \\*\\[HIGH\\]\\* <${EXTERNAL}/api/v1/alerts/${a.id}\\|(&lt;&amp;&gt;)+…>\\n(&amp;)+…$`),
    );
    h.store.setStatus(a.id, 'resolved', 'test');
    await r.waitForCount(2);
    const resolved = r.json<Msg>(1);
    expect(resolved.text).toMatch(/^Resolved &lt;&amp;&gt;/);
    expect(resolved.blocks[0]!.text!.text).toMatch(/^:white_check_mark: Resolved: \*\[HIGH\]\* </);
    for (const t of texts(resolved)) expect(t.length).toBeLessThanOrEqual(3000);
  });
});

describe('generic payload', () => {
  it('carries the documented alert object', async () => {
    const r = await receiver();
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      external_url: EXTERNAL,
      integrations: [{ name: 'hook', type: 'generic', url: r.url(), secrets: [SECRET], ...FAST }],
    });
    const p = falco();
    const a = h.ingest(p, 'prod');
    await r.waitForCount(1);
    const doc = r.json<{ type: string; timestamp: string; data: { integration: string; alerts: Record<string, unknown>[] } }>(0);
    expect(Object.keys(doc)).toEqual(['type', 'timestamp', 'data']);
    expect(doc.type).toBe('alert.triggered');
    expect(doc.timestamp).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(doc.data.alerts[0]).toEqual({
      id: a.id,
      status: 'triggered',
      source: 'falco',
      severity: 'critical',
      title: p.title,
      description: p.description,
      agent: 'prod',
      cluster: 'prod',
      namespace: 'shop',
      policies: [],
      rule: 'Terminal shell in container',
      labels: p.labels,
      count: 1,
      first_seen: p.first_seen,
      last_seen: p.last_seen,
      resolved_at: null,
      fingerprint: p.fingerprint,
      details: { falco: p.falco },
      url: `${EXTERNAL}/api/v1/alerts/${a.id}`,
    });
    h.store.setStatus(a.id, 'resolved', 'test');
    await r.waitForCount(2);
    const res = r.json<typeof doc>(1);
    expect(res.type).toBe('alert.resolved');
    expect(res.data.alerts[0]).toEqual({ ...doc.data.alerts[0], status: 'resolved', resolved_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) });
  });
});
