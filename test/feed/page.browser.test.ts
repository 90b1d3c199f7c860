import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { launchChromium } from '../helpers/chromium.js';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { buildHttpServer } from '../../src/server/feed/http-server.js';
import type { alertView } from '../../src/server/feed/alerts-routes.js';
import type {
  AgentConfig as PageAgentConfig,
  AgentConnection as PageAgentConnection,
  Alert,
  AlertDetail as PageDetail,
  Occurrence as PageOccurrence,
  ProjectSync as PageProjectSync,
  SyncObject as PageSyncObject,
} from '../../src/server/feed/web/api-types.js';
import type { AgentConfigStatus } from '../../src/server/agents/agent-registry.js';
import type { AgentConnection } from '../../src/server/agents/connections.js';
import type { ProjectSyncView, SyncObjectView } from '../../src/modules/gitops/sync-status.js';
import { CLOCK_SKEW_MS, type AlertDetail, type Occurrence } from '../../src/server/store/types.js';
import { SEVERITIES, SEVERITY_RANK } from '../../src/shared/alert/payload.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ciliumPayload, falcoPayload } from '../../src/server/store/test-payloads.js';

// The page's API types (web/api-types.d.ts, built from src/shared/alert/stored.ts
// for its JSDoc type check) name the fields the server sends: `npm run typecheck` fails here when they part.
// The agents' (GET /api/v1/agents) likewise; their top-level fields are compared
// with the API's answer in agents-view.browser.test.ts.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const apiTypesFollowTheServer: [
  Same<Exclude<keyof Alert, 'samples'>, keyof ReturnType<typeof alertView>>,
  Same<PageOccurrence, Occurrence>,
  Same<keyof PageDetail, keyof AlertDetail>,
  Same<PageAgentConfig, AgentConfigStatus>,
  // The route sends since: null for an agent that has not called since the server started.
  Same<PageAgentConnection, Omit<AgentConnection, 'since'> & { since: string | null }>,
  Same<PageProjectSync, ProjectSyncView>,
  Same<PageSyncObject, SyncObjectView>,
] = [true, true, true, true, true, true, true];
void apiTypesFollowTheServer;

// Run inside the page by playwright; the project compiles without the DOM library.
declare const document: any;
declare const window: any;
declare const localStorage: any;

// The web page in a real browser (Debian's chromium driven by playwright-core;
// nothing is downloaded): it loads, shows new alerts live, keeps a status
// change, and renders attacker-controlled text as text.

let n = 0;
const ev = (payload: ReturnType<typeof ciliumPayload>) => ({ id: `page-${++n}`, payload });

describe('web page in Chromium', () => {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const write = tokens.create('alice', 'write').token;
  const read = tokens.create('viewer', 'read').token;
  let app: FastifyInstance;
  let base = '';
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    store.ingest('prod', [
      ev(ciliumPayload({ fp: 'seed-1', ns: 'shop', dst: 'payments-api', severity: 'medium' })),
      ev(falcoPayload({ fp: 'seed-2', ns: 'db', pod: 'postgres-0', severity: 'high' })),
    ]);
    page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => {
      pageErrors.push(`dialog: ${d.message()}`);
      void d.dismiss();
    });
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    db.close();
  });

  const rowTitles = () => page.locator('#alerts .alert .title').allTextContents();

  it('loads with the token from the URL fragment, drops the fragment, lists alerts and goes live', async () => {
    await page.goto(`${base}/#token=${write}`);
    await page.waitForSelector('#alerts .alert');
    expect(new URL(page.url()).hash).toBe('');
    expect(await page.evaluate(() => localStorage.getItem('verdict.feedToken'))).toBe(write);
    expect(await rowTitles()).toHaveLength(2);
    await page.waitForSelector('#conn[data-state="live"]');
    await page.waitForSelector('[data-severity-count="high"] b');
    expect(await page.locator('[data-severity-count="high"] b').textContent()).toBe('1');
    // Counts by source and by namespace, each a button that filters.
    const bars = (id: string) =>
      page.locator(`#${id} .bar`).evaluateAll((bs) => bs.map((b) => `${b.querySelector('span').textContent}=${b.querySelector('b').textContent}`).sort());
    expect(await bars('source-counts')).toEqual(['cilium=1', 'falco=1']);
    expect(await bars('namespace-counts')).toEqual(['db=1', 'shop=1']);
  });

  it('does not poll: with the page idle for a minute it asks the API nothing', async () => {
    const idle = await browser.newPage();
    // A fake clock in the page: a minute of its timers runs at once.
    await idle.clock.install();
    await idle.goto(`${base}/#token=${write}`);
    await idle.waitForSelector('#conn[data-state="live"]');
    await idle.waitForSelector('#source-counts .bar');
    const requests: string[] = [];
    idle.on('request', (r) => {
      if (new URL(r.url()).pathname.startsWith('/api/')) requests.push(r.url());
    });
    await idle.clock.runFor(60_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(requests).toEqual([]);
    expect(await idle.locator('#conn').getAttribute('data-state')).toBe('live');
    await idle.close();
  });

  it('shows a new alert as soon as it is stored, without reloading', async () => {
    const reloads: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/api/v1/alerts?')) reloads.push(r.url());
    });
    store.ingest('prod', [ev(ciliumPayload({ fp: 'live-1', ns: 'payments', src: 'intruder', dst: 'vault', severity: 'critical' }))]);
    // "As soon as": pushed by the stream (no list request below), within a bound that only a
    // page that polls or waits for a reload would miss; how fast Chromium paints depends on the load.
    await page.waitForFunction(() => [...document.querySelectorAll('#alerts .alert .title')].some((e) => e.textContent!.includes('intruder')), undefined, {
      timeout: 5000,
    });
    expect(reloads).toEqual([]);
    // Newest activity first.
    expect((await rowTitles())[0]).toContain('intruder');
  });

  it('acknowledges an alert with the button, and the change sticks after a reload', async () => {
    const id = store.list({ limit: 10, q: 'intruder' }).alerts[0]!.id;
    await page.click(`#alerts .alert[data-id="${id}"]`);
    await page.waitForSelector('#detail [data-action="acknowledged"]');
    // The detail shows the dropped flow: source and destination pods, the port, why it was dropped.
    const flow = await page.locator('#detail .flow').textContent();
    expect(flow).toMatch(/payments\/intruder-[\s\S]*payments\/vault-/);
    expect(flow).toContain('port 8443');
    expect(await page.locator('#detail .flow + dl.fields').textContent()).toMatch(/Drop reason\s*POLICY_DENIED/);
    await page.click('#detail [data-action="acknowledged"]');
    await page.waitForSelector(`#alerts .alert[data-id="${id}"] .badge.acknowledged`);
    expect(store.get(id)!.status).toBe('acknowledged');
    await page.reload();
    await page.waitForSelector(`#alerts .alert[data-id="${id}"] .badge.acknowledged`);
    await page.click(`#alerts .alert[data-id="${id}"]`);
    await page.waitForSelector('#detail ol.history li');
    expect(await page.locator('#detail ol.history li').first().textContent()).toMatch(/acknowledged from triggered by alice/);
    // Resolved alerts leave the default (open) view.
    await page.click('#detail [data-action="resolved"]');
    await page.waitForFunction((alertId) => !document.querySelector(`#alerts .alert[data-id="${alertId}"]`), id);
    await page.click('#status-filter [data-status="resolved"]');
    await page.waitForSelector(`#alerts .alert[data-id="${id}"] .badge.resolved`);
    await page.click('#status-filter [data-status="open"]');
  });

  it('renders a <script> in a pod name and HTML in Falco output as text', async () => {
    const pod = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">';
    // The id from ingest itself: a search for it could also find other tests' alerts.
    const id = store.ingest('prod', [
      ev(falcoPayload({ fp: 'xss', ns: 'web', pod, severity: 'critical', output: `Shell in ${pod} <b>bold</b> <a href="javascript:window.__xss=3">x</a>` })),
    ]).alerts[0]!.id;
    await page.waitForFunction(() => [...document.querySelectorAll('#alerts .alert .title')].some((e) => e.textContent!.includes('<script>')));
    await page.click(`#alerts .alert[data-id="${id}"]`);
    // The previous test's alert stays in the detail pane until this one has loaded.
    await page.waitForFunction(() => document.querySelector('#detail h1')?.textContent?.includes('<script>') && document.querySelector('#detail .output'));
    expect(await page.locator('#detail h1').textContent()).toContain('<script>window.__xss = 1</script>');
    expect(await page.locator('#detail .output').first().textContent()).toContain('<b>bold</b>');
    const injected = await page.evaluate(() => ({
      xss: (window as unknown as { __xss?: number }).__xss,
      scripts: document.querySelectorAll('script').length,
      imgs: [...document.querySelectorAll('img')].filter((i) => i.getAttribute('src') === 'x').length,
      links: document.querySelectorAll('a[href^="javascript:"]').length,
      bold: [...document.querySelectorAll('#detail b')].some((b) => b.textContent === 'bold'),
    }));
    expect(injected).toEqual({ xss: undefined, scripts: 1, imgs: 0, links: 0, bold: false });

    // The same in a Cilium flow's source pod, shown in the list, the flow and the labels.
    const flowId = store.ingest('prod', [ev(ciliumPayload({ fp: 'xss-flow', ns: 'edge', src: 'evil', dst: 'api', srcPod: pod, severity: 'critical' }))])
      .alerts[0]!.id;
    await page.waitForSelector(`#alerts .alert[data-id="${flowId}"]`);
    await page.click(`#alerts .alert[data-id="${flowId}"]`);
    await page.waitForFunction(() => document.querySelector('#detail h1')?.textContent?.includes('evil') && document.querySelector('#detail .flow .pod'));
    expect(await page.locator('#detail .flow .pod').first().textContent()).toBe(`edge/${pod}`);
    expect(await page.locator('#detail .labels').first().textContent()).toContain(pod);
    expect(
      await page.evaluate(() => ({
        xss: (window as unknown as { __xss?: number }).__xss,
        scripts: document.querySelectorAll('script').length,
        imgs: [...document.querySelectorAll('img')].filter((i) => i.getAttribute('src') === 'x').length,
      })),
    ).toEqual({ xss: undefined, scripts: 1, imgs: 0 });
    expect(pageErrors).toEqual([]);
  });

  it('filters by severity and search, and says so when a read-only token tries to change status', async () => {
    await page.click('#severity-filter [data-severity="high"]');
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('#alerts .alert')].every((e) => e.classList.contains('high')) && document.querySelectorAll('#alerts .alert').length === 1,
    );
    await page.click('#severity-filter [data-severity="high"]');
    await page.fill('#search', 'payments-api');
    await page.waitForFunction(
      () => document.querySelectorAll('#alerts .alert').length === 1 && document.querySelector('#alerts .alert .title')!.textContent!.includes('payments-api'),
    );
    await page.fill('#search', '');

    const viewer = await browser.newPage();
    await viewer.goto(`${base}/#token=${read}`);
    await viewer.waitForSelector('#alerts .alert');
    await viewer.click('#alerts .alert >> nth=0');
    await viewer.click('#detail [data-action="ignored"]');
    await viewer.waitForSelector('#action-error:not([hidden])');
    expect(await viewer.locator('#action-error').textContent()).toMatch(/cannot change status.*scope "read"/);
    await viewer.close();
  });

  it('serves every module the page imports, as JavaScript, with the severities from the payload module', async () => {
    const seen = new Set<string>();
    const queue = ['/app.js'];
    while (queue.length) {
      const path = queue.shift()!;
      if (seen.has(path)) continue;
      seen.add(path);
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(/^text\/javascript/);
      expect(res.headers.get('content-security-policy'), path).toContain("script-src 'self'");
      const js = await res.text();
      // Data reaches the page as text only.
      expect(js, path).not.toMatch(/innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function/);
      for (const m of js.matchAll(/^import\s[^'"]*['"]\.\/([\w-]+\.js)['"]/gm)) queue.push(`/${m[1]}`);
    }
    expect(seen.size).toBeGreaterThan(5);
    expect(seen).toContain('/constants.js');
    // As the page's modules import it (a string: vitest would rewrite an import() in a function).
    const constants = await page.evaluate(
      "import('/constants.js').then((m) => ({ severities: [...m.SEVERITIES], rank: { ...m.SEVERITY_RANK }, skew: m.CLOCK_SKEW_MS }))",
    );
    expect(constants).toEqual({ severities: [...SEVERITIES], rank: SEVERITY_RANK, skew: CLOCK_SKEW_MS });
    const html = await (await fetch(`${base}/`)).text();
    const sheets = [...html.matchAll(/<link rel="stylesheet" href="([^"]+)"/g)].map((m) => m[1]!);
    expect(sheets.length).toBeGreaterThan(1);
    for (const path of sheets) expect((await fetch(`${base}${path}`)).headers.get('content-type'), path).toMatch(/^text\/css/);
    // Type declarations and the page's tsconfig are source, not page.
    for (const path of ['/api-types.d.ts', '/tsconfig.json', '/index.html']) expect((await fetch(`${base}${path}`)).status, path).toBe(404);
  });

  it('flags an alert stamped ahead of its receipt (a fast clock) and shows its time as given', async () => {
    const ahead = new Date(Date.now() + 3 * 3600_000 + 120_000).toISOString();
    const id = store.ingest('prod', [ev(ciliumPayload({ fp: 'skewed', ns: 'fastclock', src: 'skewed-src', dst: 'db', severity: 'low', time: ahead }))])
      .alerts[0]!.id;
    const row = `#alerts .alert[data-id="${id}"]`;
    await page.waitForSelector(`${row} .skew`);
    expect(await page.locator(`${row} .skew`).getAttribute('title')).toMatch(/5 minutes after the server received it/);
    expect(await page.locator(`${row} .when`).textContent()).toBe('in 3h');
    await page.click(row);
    await page.waitForFunction(() => document.querySelector('#detail h1')?.textContent?.includes('skewed-src'));
    const fields = await page
      .locator('#detail > dl.fields')
      .first()
      .evaluate((dl) => {
        const out: Record<string, string> = {};
        for (const dt of dl.querySelectorAll('dt')) out[dt.textContent] = dt.nextElementSibling.textContent;
        return out;
      });
    const shown = await page.evaluate((iso) => new Date(iso).toLocaleString(undefined, { timeZoneName: 'short' }), ahead);
    expect(fields['Last seen']).toBe(`${shown} (in 3h) clock ahead`);
    expect(fields['Last received']).toMatch(/\(to the minute\)$/);
    expect(await page.locator('#detail table.occ td.stamped.ahead .skew').count()).toBe(1);
    // Its one occurrence set the severity too: marked among the latest, not shown twice.
    expect(await page.locator('#detail .severity-occurrence').textContent()).toMatch(/^Set the severity: low.*marked among the latest/);
    expect(await page.locator('#detail table.occ tr.sets-severity').count()).toBe(1);
  });

  it("shows the occurrence that set an alert's severity beside the latest, after they have moved past it", async () => {
    const fp = 'sev-setter';
    const id = store.ingest('prod', [ev(falcoPayload({ fp, ns: 'vault', pod: 'vault-0', severity: 'critical', output: 'the critical one: token read by nc' }))])
      .alerts[0]!.id;
    store.ingest(
      'prod',
      Array.from({ length: 21 }, (_, i) => ev(falcoPayload({ fp, ns: 'vault', pod: 'vault-0', severity: 'low', output: `a low repeat ${i}` }))),
    );
    expect(store.get(id)!.severity).toBe('critical');
    await page.waitForSelector(`#alerts .alert[data-id="${id}"]`);
    await page.click(`#alerts .alert[data-id="${id}"]`);
    await page.waitForFunction(
      () => document.querySelector('#detail h1')?.textContent?.includes('vault-0') && document.querySelector('#detail .severity-occurrence'),
    );
    const setter = page.locator('#detail .severity-occurrence');
    expect(await setter.locator('h3').textContent()).toBe('Set the severity: critical');
    expect(await setter.locator('tbody tr').count()).toBe(1);
    expect(await setter.locator('tbody tr').textContent()).toContain('the critical one: token read by nc');
    expect(await setter.textContent()).toMatch(/Older than the latest 20 occurrences/);
    // The latest are the low repeats only.
    const latest = page.locator('#detail table.occ').last();
    expect(await latest.locator('tbody tr').count()).toBe(20);
    expect(await latest.textContent()).not.toContain('the critical one');
    expect(await latest.locator('tbody tr.sets-severity').count()).toBe(0);
    expect(pageErrors).toEqual([]);
  });

  it('asks for a token when it has none', async () => {
    const fresh = await browser.newPage();
    await fresh.goto(`${base}/`);
    await fresh.waitForSelector('#token-dialog[open]');
    await fresh.fill('#token-input', write);
    await fresh.click('#token-save');
    await fresh.waitForSelector('#alerts .alert');
    await fresh.close();
  });
});
