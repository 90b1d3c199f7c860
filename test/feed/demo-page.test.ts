import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { killAll, spawnDemo, tempDir, type VerdictProcess } from '../helpers/processes.js';

// Run inside the page by playwright; the project compiles without the DOM library.
declare const document: any;

// The page as people first meet it: `verdict demo` (the built CLI, every part a
// real process component) prints a link with the feed token in its fragment;
// opened in Chromium, the page fills with the demo's alerts as they happen.

describe('verdict demo and its web page', () => {
  let demo: VerdictProcess;
  let link = '';
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchChromium();
    demo = await spawnDemo(join(tempDir(), 'demo'));
    link = (await demo.waitForStdout(/feed:\s+(http:\/\/\S+#token=vdt_feed_[\w-]+)/, 60_000))[1]!;
  });

  afterAll(async () => {
    await browser?.close();
    await killAll();
  });

  it('serves the page from the built server with its security headers', async () => {
    const res = await fetch(link.replace(/#.*$/, ''));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await res.text()).toContain('<script src="/app.js"');
    expect((await fetch(new URL('/app.js', link))).status).toBe(200);
    // The page's modules import the severities the server generates from its payload module.
    expect(await (await fetch(new URL('/constants.js', link))).text()).toContain('export const SEVERITIES');
  });

  it("opens from the printed link and shows the demo's alerts live", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(link);
    await page.waitForSelector('#conn[data-state="live"]', { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelectorAll('#alerts .alert').length > 0, undefined, { timeout: 60_000 });
    // Both sources arrive, without a reload: the list grows from the stream.
    await page.waitForFunction(
      () => {
        const srcs = new Set([...document.querySelectorAll('#alerts .alert .src')].map((e) => e.textContent));
        return srcs.has('cilium') && srcs.has('falco');
      },
      undefined,
      { timeout: 60_000 },
    );
    expect(new URL(page.url()).hash).toBe('');
    expect(errors).toEqual([]);
    await page.close();
  });
});
