import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AlertPayload } from '../../src/shared/alert/payload.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { buildHttpServer } from '../../src/server/feed/http-server.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { falcoPayload } from '../../src/server/store/test-payloads.js';
import { launchChromium } from '../helpers/chromium.js';

// Run inside the page by playwright; the project compiles without the DOM library.
declare const document: any;
declare const localStorage: any;
declare const location: any;

// The web page in Chromium with alerts that have no namespace, or one that is not a
// DNS label, and process names no full-text index holds: every namespace bar filters,
// a search for an emoji finds it, a #token= link works in a tab that is open already,
// and times name their zone.

let n = 0;
const ev = (payload: AlertPayload) => ({ id: `pf-${++n}`, payload });

function falco(fp: string, ns: string, proc: string): AlertPayload {
  const p = falcoPayload({ fp, ns, pod: `${fp}-pod`, output: `process ${proc} started (proc.name=${proc})` });
  return { ...p, namespace: ns, title: `${fp} alert`, labels: { ...p.labels, process: proc } };
}

describe('web page in Chromium: namespaces, literal search, token links, time zones', () => {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const tokens = new FeedTokens(db);
  const read = tokens.create('viewer', 'read').token;
  let app: FastifyInstance;
  let base = '';
  let browser: Browser;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    browser = await launchChromium();
    app = await buildHttpServer({ store, tokens, log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    store.ingest('prod', [
      ev(falco('shell', 'shop', '🐚')),
      ev(falco('host', '', 'sshd')),
      ev(falco('odd', 'Not_A_Valid NS!', 'nginx')),
      ev(falco('plain', 'db', 'postgres')),
    ]);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    db.close();
  });

  /** A page in a fresh context (no stored token), with the token taken from the URL. */
  async function open(opts: { timezoneId?: string } = {}): Promise<Page> {
    const ctx = await browser.newContext({ locale: 'en-US', ...opts });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${base}/#token=${read}`);
    await page.waitForSelector('#conn[data-state="live"]');
    return page;
  }
  const waitTitles = async (page: Page, want: string[]) => {
    await page.waitForFunction(
      (w) => JSON.stringify([...document.querySelectorAll('#alerts .alert .title')].map((e: any) => e.textContent).sort()) === JSON.stringify(w),
      [...want].sort(),
      { timeout: 10_000 },
    );
  };

  it('filters by "(no namespace)" and by a namespace that is not a DNS label, as the bars name them', async () => {
    const page = await open();
    await page.waitForSelector('#namespace-counts .bar');
    const bars = await page.locator('#namespace-counts .bar span').allTextContents();
    expect(bars.sort()).toEqual(['(no namespace)', 'Not_A_Valid NS!', 'db', 'shop']);
    await page.locator('#namespace-counts .bar', { hasText: '(no namespace)' }).click();
    await waitTitles(page, ['host alert']);
    expect(await page.locator('#list-info').textContent()).toMatch(/^1 alert matching \(no namespace\)/);
    expect(await page.locator('#error').isHidden()).toBe(true);
    await page.locator('#namespace-counts .bar', { hasText: 'Not_A_Valid NS!' }).click();
    await waitTitles(page, ['odd alert']);
    expect(await page.locator('#error').isHidden()).toBe(true);
    // Clicking the bar shown again clears the filter.
    await page.locator('#namespace-counts .bar', { hasText: 'Not_A_Valid NS!' }).click();
    await waitTitles(page, ['host alert', 'odd alert', 'plain alert', 'shell alert']);
    expect(pageErrors).toEqual([]);
    await page.context().close();
  });

  it('finds an emoji process name, and nothing else, when searched for', async () => {
    const page = await open();
    await waitTitles(page, ['host alert', 'odd alert', 'plain alert', 'shell alert']);
    await page.fill('#search', '🐚');
    await waitTitles(page, ['shell alert']);
    expect(await page.locator('#list-info').textContent()).toBe('1 alert matching “🐚”');
    await page.fill('#search', '✗');
    await waitTitles(page, []);
    expect(await page.locator('#list-info').textContent()).toBe('0 alerts matching “✗”');
    await page.context().close();
  });

  it('takes a #token= link opened in a tab that shows the page already, and drops it from the address bar', async () => {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${base}/`);
    await page.waitForSelector('#conn[data-state="auth"]');
    expect(await page.locator('#token-dialog').evaluate((d: any) => d.open)).toBe(true);
    // Same document: only the fragment changes (hashchange), as when the link is pasted into this tab.
    await page.goto(`${base}/#token=${read}`);
    await page.waitForSelector('#conn[data-state="live"]');
    await waitTitles(page, ['host alert', 'odd alert', 'plain alert', 'shell alert']);
    expect(new URL(page.url()).hash).toBe('');
    expect(await page.evaluate(() => localStorage.getItem('verdict.feedToken'))).toBe(read);
    expect(await page.locator('#token-dialog').evaluate((d: any) => d.open)).toBe(false);
    // The agents view keeps its place in the fragment.
    await page.goto(`${base}/#agents&token=${read}`);
    await page.waitForFunction(() => location.hash === '#agents');
    expect(await page.locator('#agents-view').isVisible()).toBe(true);
    await ctx.close();
  });

  it('keeps the search and filters in the URL fragment: a reload keeps them, a link opens them', async () => {
    const page = await open();
    await waitTitles(page, ['host alert', 'odd alert', 'plain alert', 'shell alert']);
    await page.fill('#search', '🐚');
    await waitTitles(page, ['shell alert']);
    await page.click('#status-filter [data-status="all"]');
    await page.locator('#namespace-counts .bar', { hasText: 'shop' }).click();
    await page.waitForFunction(() => location.hash.includes('namespace=shop'));
    expect(new URL(page.url()).hash).toBe('#status=all&namespace=shop&q=%F0%9F%90%9A');
    await page.reload();
    await page.waitForSelector('#conn[data-state="live"]');
    await waitTitles(page, ['shell alert']);
    expect(await page.inputValue('#search')).toBe('🐚');
    expect(await page.locator('#status-filter [data-status="all"]').getAttribute('aria-pressed')).toBe('true');
    expect(await page.locator('#list-info').textContent()).toMatch(/^1 alert matching namespace shop, “🐚”/);
    // A link changed in this tab (hashchange): its filters replace these.
    await page.goto(`${base}/#q=sshd`);
    await waitTitles(page, ['host alert']);
    expect(await page.inputValue('#search')).toBe('sshd');
    expect(await page.locator('#status-filter [data-status="open"]').getAttribute('aria-pressed')).toBe('true');
    // To the agents and back: the filters come back with the alerts.
    await page.click('#view-tabs a[data-view="agents"]');
    await page.waitForFunction(() => location.hash === '#agents');
    await page.click('#view-tabs a[data-view="alerts"]');
    await page.waitForFunction(() => location.hash === '#q=sshd');
    await waitTitles(page, ['host alert']);
    await page.context().close();
    // A shared link, with a token and no namespace: the token is taken, the filter stays.
    const ctx = await browser.newContext();
    const shared = await ctx.newPage();
    await shared.goto(`${base}/#namespace=&token=${read}`);
    await shared.waitForSelector('#conn[data-state="live"]');
    await waitTitles(shared, ['host alert']);
    expect(new URL(shared.url()).hash).toBe('#namespace=');
    await ctx.close();
  });

  it('takes a status the page does not know, even a name every object has (constructor, __proto__), as the default', async () => {
    for (const status of ['constructor', '__proto__', 'toString', 'nonsense']) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(`${base}/#status=${status}&token=${read}`);
      await page.waitForSelector('#conn[data-state="live"]');
      await waitTitles(page, ['host alert', 'odd alert', 'plain alert', 'shell alert']);
      expect(await page.locator('#status-filter [data-status="open"]').getAttribute('aria-pressed'), status).toBe('true');
      expect(errors, status).toEqual([]);
      await ctx.close();
    }
  });

  it('names the zone of every time it shows', async () => {
    for (const [timezoneId, zone] of [
      ['UTC', 'UTC'],
      ['Asia/Tokyo', 'GMT+9'],
    ] as const) {
      const page = await open({ timezoneId });
      await page.waitForSelector('#alerts .alert .when');
      const title = await page.locator('#alerts .alert .when').first().getAttribute('title');
      expect(title, timezoneId).toMatch(new RegExp(`^last seen \\d+/\\d+/\\d{4}, \\d+:\\d\\d:\\d\\d [AP]M ${zone.replace('+', '\\+')}$`));
      await page.locator('#alerts .alert').first().click();
      await page.waitForSelector('#detail dd');
      expect(await page.locator('#detail').textContent()).toContain(` ${zone}`);
      await page.context().close();
    }
  });
});
