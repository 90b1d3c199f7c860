import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runConfigStream, type ConfigUpdate } from '../../src/agent/tunnel/config-client.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { type ObjectsBatch, receiveObjects } from '../../src/modules/gitops/objects-client.js';
import { SyncReporter } from '../../src/modules/gitops/reporter.js';
import type { ProjectSyncingView } from '../../src/modules/gitops/sync-status.js';
import type { SyncReport } from '../../src/modules/gitops/worker.js';
import type { Agent, AgentGitopsStatus, ProjectSyncing } from '../../src/server/feed/web/api-types.js';
import type { RunningServer } from '../../src/server/server.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { VERSION } from '../../src/shared/version.js';
import { launchChromium } from '../helpers/chromium.js';
import { type ConfigProject, tempDir, until } from '../helpers/processes.js';
import { apiOf, manifestProject, startGitopsServer } from '../gitops/harness.js';

// Run inside the page by playwright; the project compiles without the DOM library.
declare const document: {
  querySelector(s: string): { hasAttribute(n: string): boolean; textContent: string | null } | null;
  dispatchEvent(e: unknown): boolean;
  scripts: { length: number };
};

// The web page's Agents view in a real browser, fed by a real server: an agent
// connects through the tunnel and opens its configuration stream (connection,
// version, config commit, warnings), and reports GitOps syncs through
// ReportSync with the agent's own reporter, as the GitOps module does after a
// sync (a failed object with the API server's reason). A second agent fetches
// its configuration project's objects with the agent's own client and does not
// report: a sync under way. The view polls only while it is shown and the tab
// visible; the alerts view stays push-only.

// Every field of an agent the page types, exactly (satisfies: none missing, none extra); compared with the API's answer below.
const AGENT_FIELDS = { name: true, created_at: true, connection: true, config: true, modules: true, module_status: true } satisfies Record<keyof Agent, true>;
const GITOPS_FIELDS = { projects: true, syncing: true } satisfies Record<keyof AgentGitopsStatus, true>;
const SYNCING_FIELDS = { project_id: true, commit_id: true, since: true } satisfies Record<keyof ProjectSyncing, true>;
// The page's type of a sync under way is the server's (`npm run typecheck` fails here when they part).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const syncingFollowsTheServer: Same<ProjectSyncing, ProjectSyncingView> = true;
void syncingFollowsTheServer;

// As the API server words a refused apply; the object's name is the manifest author's, so it carries markup here.
const REASON = 'ConfigMap "x-<b>bold</b>" is invalid: metadata.name: Invalid value: "x-<b>bold</b>": cannot use generate name with apply';
const OBJECT = '/ConfigMap gitops/x-<b>bold</b>';

const dir = tempDir('verdict-agents-view-');
const log = createRootLogger({ name: 'test', level: 'silent' });
let server: RunningServer;
let tunnel: Tunnel;
let reporter: SyncReporter;
let browser: Browser;
let base = '';
let read = '';
let config: ConfigProject;
let configCommit = '';
let appCommit = '';
let stagingToken = '';
const agentStop = new AbortController();
const streamStop = new AbortController();
const running: Promise<void>[] = [];
const configs: ConfigUpdate[] = [];
const pageErrors: string[] = [];

const report = (r: Partial<SyncReport> & Pick<SyncReport, 'projectId' | 'commit' | 'ok'>): SyncReport => ({ driftCorrected: false, ...r });

const agentsApi = () => apiOf(server, read).agents();

async function newPage(): Promise<Page> {
  const page = await browser.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  return page;
}

beforeAll(async () => {
  browser = await launchChromium();
  appCommit = manifestProject(dir, 'group/app').commit({ 'manifests/bad.yaml': 'kind: ConfigMap\n' });
  // resource_inclusions validates but is not used: a config warning the view shows.
  let token: string;
  ({ server, config, token } = await startGitopsServer(dir, log, {
    // The configuration project is listed too (the entry without id): the server keeps the status of listed projects only.
    agentConfig:
      'gitops:\n  manifest_projects:\n    - id: group/app\n      resource_inclusions: [{api_groups: [""], kinds: [ConfigMap]}]\n    - paths: [{glob: "manifests/**/*.yaml"}]\n',
    settings: { config_poll_interval: 100 },
  }));
  configCommit = config.git('rev-parse', 'HEAD');
  base = `http://${server.httpAddress}`;
  read = server.tokens.create('viewer', 'read').token;
  stagingToken = server.agents.register('staging', config.dir).token;
  tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${server.grpcAddress}`), token, log });
  const backoff = { initialMs: 100, maxMs: 300, jitter: false };
  running.push(
    runConfigStream(tunnel, backoff, log, streamStop.signal, async (u) => {
      configs.push(u);
    }),
  );
  reporter = new SyncReporter(tunnel, { log, backoff });
  running.push(reporter.run(agentStop.signal));
  await until(() => configs.length > 0, 20_000, 'the agent to get its configuration');
  reporter.offer(
    report({
      projectId: 'group/app',
      commit: appCommit,
      ok: false,
      result: {
        commit: appCommit,
        dryRun: 'none',
        applied: 3,
        changed: 1,
        unchanged: 1,
        pruned: 2,
        failed: 1,
        durationMs: 1234,
        objects: [
          { object: '/ConfigMap gitops/settings', source: 'manifests/cm.yaml#1', action: 'configured' },
          { object: OBJECT, source: 'manifests/bad.yaml#1', action: 'failed', reason: REASON },
        ],
      },
    }),
  );
  // The configuration project's own manifests: a sync that could not run at all.
  reporter.offer(report({ projectId: '', commit: configCommit, ok: false, error: 'manifests/app.yaml: not a Kubernetes object: <script>x</script>' }));
  await until(async () => (await agentsApi()).find((a) => a.name === 'edge')?.module_status.gitops?.projects.length === 2, 20_000, 'the sync reports');
}, 120_000);

afterAll(async () => {
  await browser?.close();
  streamStop.abort();
  agentStop.abort();
  await Promise.allSettled(running);
  await tunnel?.close();
  await server?.close();
});

describe('the Agents view in Chromium', () => {
  let page: Page;
  const edge = () => page.locator('#agents tr.agent[data-agent="edge"]');
  const edgeDetail = () => page.locator('#agents tr.agent-detail[data-agent="edge"]');

  it('the API answers with the fields the page types', async () => {
    const agents = await agentsApi();
    expect(agents.map((a) => a.name).sort()).toEqual(['edge', 'staging']);
    for (const a of agents) {
      expect(Object.keys(a).sort()).toEqual(Object.keys(AGENT_FIELDS).sort());
      expect(Object.keys(a.module_status.gitops ?? {}).sort()).toEqual(Object.keys(GITOPS_FIELDS).sort());
    }
  });

  it("switches from the alerts to the agents and shows each agent's connection, version, config commit and modules", async () => {
    page = await newPage();
    await page.goto(`${base}/#token=${read}`);
    await page.waitForSelector('#conn[data-state="live"]');
    expect(await page.locator('#agents-view').isHidden()).toBe(true);
    await page.click('#view-tabs [data-view="agents"]');
    expect(new URL(page.url()).hash).toBe('#agents');
    expect(await page.locator('#alerts-view').isHidden()).toBe(true);
    expect(await page.locator('#view-tabs [data-view="agents"]').getAttribute('aria-current')).toBe('page');
    await edge().waitFor();
    expect(await edge().locator('.conn-cell').textContent()).toMatch(/^Connected since /);
    expect(await edge().locator('.version').textContent()).toBe(VERSION);
    expect(await edge().locator('.config-cell .commit').textContent()).toBe(configCommit.slice(0, 8));
    expect(await edge().locator('.config-cell .commit').getAttribute('title')).toBe(configCommit);
    expect(await edge().locator('.config-cell').textContent()).toContain('1 warning');
    expect(await edge().locator('.modules .chip').allTextContents()).toEqual(['gitops']);
    expect(await edge().locator('.gitops-cell').textContent()).toMatch(/^2 projects\s+2 failing$/);
    expect(await page.locator('#agents-info').textContent()).toMatch(/^2 agents · 1 connected · 1 with a failing sync/);

    const staging = page.locator('#agents tr.agent[data-agent="staging"]');
    expect(await staging.locator('.conn-cell').textContent()).toBe('Not seen since the server started');
    expect(await staging.locator('.version').textContent()).toBe('—');
    expect(await staging.locator('.config-cell').textContent()).toBe('not sent yet');
    expect(await staging.locator('.gitops-cell').textContent()).toBe('—');
    // Nothing wrong with it: closed.
    expect(await page.locator('#agents tr.agent-detail[data-agent="staging"]').count()).toBe(0);
  });

  it("opens an agent with a failing sync by itself: the project's commit, counts, and the failed object with the API server's reason, as text", async () => {
    expect(await edge().locator('[data-toggle="edge"]').getAttribute('aria-expanded')).toBe('true');
    const project = edgeDetail().locator('tr.project[data-project="group/app"]');
    const cells = await project.locator('td').allTextContents();
    expect(cells.slice(0, 9)).toEqual(['group/app', 'failed', appCommit.slice(0, 8), '3', '1', '1', '2', '1', '1.2 s']);
    expect(cells[9]).toMatch(/^(just now|\d+s ago)$/);
    expect(cells[10]).toBe('none yet');
    const failed = edgeDetail().locator('tr.project-objects[data-project="group/app"] li.object.failed');
    expect(await failed.count()).toBe(1);
    expect(await failed.locator('.object-name').textContent()).toBe(OBJECT);
    expect(await failed.locator('.source').textContent()).toBe('from manifests/bad.yaml#1');
    expect(await failed.locator('.reason').textContent()).toBe(REASON);
    // The configured object is no news (the reporter sends it only after drift), and the markup stays text.
    expect(await edgeDetail().locator('li.object').count()).toBe(1);
    expect(await page.locator('#agents b').evaluateAll((bs) => bs.map((b) => b.textContent))).not.toContain('bold');
    // A sync that could not run: its error, as text.
    const own = edgeDetail().locator('tr.project[data-project=""]');
    expect(await own.locator('td').first().textContent()).toBe('(configuration project)');
    expect(await own.locator('td').nth(1).textContent()).toBe('could not run');
    expect(await edgeDetail().locator('tr.project-objects[data-project=""] .run-error').textContent()).toBe(
      'Could not run: manifests/app.yaml: not a Kubernetes object: <script>x</script>',
    );
    expect(await page.evaluate(() => document.scripts.length)).toBe(1);
    expect(await edgeDetail().locator('.config-warnings li').textContent()).toMatch(
      /config\.yaml:\d+ gitops\.manifest_projects\[0\]\.resource_inclusions: .*14\.0/,
    );
    // Closed by hand, it stays closed across a refresh.
    await page.click('[data-toggle="edge"]');
    expect(await edgeDetail().count()).toBe(0);
    await page.click('#agents-refresh');
    await page.waitForFunction(() => !document.querySelector('#agents-refresh')?.hasAttribute('aria-busy'));
    expect(await edgeDetail().count()).toBe(0);
    await page.click('[data-toggle="edge"]');
    await edgeDetail().waitFor();
  });

  it('shows the next sync and the disconnect on Refresh', async () => {
    reporter.offer(
      report({
        projectId: 'group/app',
        commit: 'f'.repeat(40),
        ok: true,
        driftCorrected: true,
        result: {
          commit: 'f'.repeat(40),
          dryRun: 'none',
          applied: 2,
          changed: 1,
          unchanged: 1,
          pruned: 0,
          failed: 0,
          durationMs: 80,
          objects: [{ object: '/ConfigMap gitops/settings', source: 'manifests/cm.yaml#1', action: 'configured' }],
        },
      }),
    );
    await until(
      async () => (await agentsApi()).find((a) => a.name === 'edge')?.module_status.gitops?.projects.find((p) => p.project_id === 'group/app')?.ok,
      20_000,
      'the good sync',
    );
    // A later config.yaml that does not validate: the agent keeps the commit it runs.
    const invalid = config.commit({ '.gitlab/agents/edge/config.yaml': 'gitops:\n  manifest_projects: nope\n' });
    await until(async () => (await agentsApi()).find((a) => a.name === 'edge')?.config?.invalid, 20_000, 'the invalid commit');
    streamStop.abort();
    await until(async () => !(await agentsApi()).find((a) => a.name === 'edge')?.connection.connected, 20_000, 'the agent to disconnect');
    await page.click('#agents-refresh');
    await page.waitForFunction(() => document.querySelector('#agents tr.agent[data-agent="edge"] .conn-cell')?.textContent?.startsWith('Disconnected'));
    const project = edgeDetail().locator('tr.project[data-project="group/app"]');
    expect(await project.locator('td').nth(1).textContent()).toBe('drift corrected');
    expect(await project.locator('td').nth(10).textContent()).toBe('this one');
    expect(await edgeDetail().locator('li.object.corrected').textContent()).toMatch(
      /^configured \(drift\) \/ConfigMap gitops\/settings from manifests\/cm\.yaml#1$/,
    );
    expect(await edge().locator('.gitops-cell').textContent()).toMatch(/^2 projects\s+1 failing\s+1 drift corrected$/);
    expect(await edge().locator('.config-cell .commit').textContent()).toBe(configCommit.slice(0, 8));
    expect(await edge().locator('.config-cell .badge.bad').textContent()).toBe(`invalid ${invalid.slice(0, 8)}`);
    expect(await edgeDetail().locator('.config-invalid pre').textContent()).toMatch(/manifest_projects/);
  });

  it('shows a sync under way (a commit the server sent the agent, not reported yet) in the summary and the detail', async () => {
    // The agent's own client, as the GitOps module opens it for the configuration project's manifests; no report follows.
    // Only an agent with a gitops block opens it, and only such a one is served the project (objects-service.ts).
    config.commit({ '.gitlab/agents/staging/config.yaml': 'gitops:\n  manifest_projects:\n    - paths: [{glob: "manifests/**/*.yaml"}]\n' });
    const staging = await Tunnel.open({ address: parseKasAddress(`grpc://${server.grpcAddress}`), token: stagingToken, log });
    const stop = new AbortController();
    const batches: ObjectsBatch[] = [];
    const receiving = receiveObjects(
      staging,
      { projectId: '', ref: undefined, globs: ['manifests/**/*.yaml'] },
      { backoff: { initialMs: 100, maxMs: 300, jitter: false }, log, signal: stop.signal, onBatch: (b) => batches.push(b) },
    );
    try {
      await until(() => batches.length > 0, 20_000, "the configuration project's objects");
      const head = config.git('rev-parse', 'HEAD');
      expect(batches[0]!.commit).toBe(head);
      const syncingOf = async () => (await agentsApi()).find((a) => a.name === 'staging')?.module_status.gitops?.syncing ?? [];
      await until(async () => (await syncingOf()).length > 0, 20_000, 'the sync under way');
      const syncing = await syncingOf();
      expect(syncing).toEqual([{ project_id: '', commit_id: head, since: expect.any(String) }]);
      expect(Object.keys(syncing[0]!).sort()).toEqual(Object.keys(SYNCING_FIELDS).sort());

      const row = page.locator('#agents tr.agent[data-agent="staging"]');
      await page.click('#agents-refresh');
      await page.waitForFunction(() => !document.querySelector('#agents-refresh')?.hasAttribute('aria-busy'));
      expect(await row.locator('.gitops-cell').textContent()).toMatch(/^1 project\s+1 syncing$/);
      expect(await row.locator('.gitops-cell .badge.good').count()).toBe(0);
      await page.click('[data-toggle="staging"]');
      const detail = page.locator('#agents tr.agent-detail[data-agent="staging"]');
      const item = detail.locator('ul.syncing li.syncing-project[data-project=""]');
      expect(await item.locator('.project').textContent()).toBe('(configuration project)');
      expect(await item.locator('.commit').textContent()).toBe(head.slice(0, 8));
      expect(await item.locator('.commit').getAttribute('title')).toBe(head);
      expect(await item.locator('.since').textContent()).toMatch(/^(just now|\d+s ago)$/);
      expect(await item.textContent()).toMatch(/ · commit [0-9a-f]{8} · sent to the agent (just now|\d+s ago), not reported yet$/);
      // Nothing reported, but something is under way: not "No sync reported yet", and no empty last-sync table.
      expect(await detail.locator('.gitops').textContent()).not.toContain('No sync reported yet');
      expect(await detail.locator('table.projects').count()).toBe(0);
    } finally {
      stop.abort();
      await receiving;
      await staging.close();
    }
  });

  it("goes back to the alerts with their URL, lists the sync's gitops alert, and links its agent to the Agents view", async () => {
    await page.click('#view-tabs [data-view="alerts"]');
    expect(new URL(page.url()).hash).toBe('');
    expect(await page.locator('#alerts-view').isVisible()).toBe(true);
    // ReportSync raised an alert for the failed object; the good sync resolved it (the open view no longer lists it).
    await page.click('#status-filter [data-status="all"]');
    const row = page.locator('#alerts .alert', { hasText: 'GitOps sync failed' });
    await row.waitFor();
    await row.click();
    await page.waitForSelector('#detail dl.fields a[href="#agents/edge"]');
    await page.click('#detail dl.fields a[href="#agents/edge"]');
    await page.waitForSelector('#agents-view:not([hidden])');
    expect(new URL(page.url()).hash).toBe('#agents/edge');
    await edgeDetail().waitFor();
    // Back: the alerts again, as they were.
    await page.goBack();
    await page.waitForSelector('#alerts-view:not([hidden])');
    expect(await page.locator('#status-filter [data-status="all"]').getAttribute('aria-pressed')).toBe('true');
    await page.click('#status-filter [data-status="open"]');
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('polls only while the Agents view is shown and the tab visible; the alerts view asks nothing', async () => {
    const p = await newPage();
    await p.clock.install();
    // A token and the view in one link; the token leaves the address bar, the view stays.
    await p.goto(`${base}/#agents&token=${read}`);
    expect(new URL(p.url()).hash).toBe('#agents');
    await p.locator('#agents tr.agent[data-agent="edge"]').waitFor();
    await p.waitForSelector('#conn[data-state="live"]');
    const requests: string[] = [];
    p.on('request', (r) => {
      const path = new URL(r.url()).pathname;
      if (path.startsWith('/api/')) requests.push(path);
    });
    const settle = () => new Promise((r) => setTimeout(r, 300));

    // Every 15 s, the next timer set once an answer is in: a minute in steps, each answer awaited in real time.
    for (let i = 1; i <= 4; i++) {
      await p.clock.runFor(15_000);
      await p.waitForFunction(() => !document.querySelector('#agents-refresh')?.hasAttribute('aria-busy'));
      await settle();
      expect(requests).toHaveLength(i);
    }
    expect(requests).toEqual(Array(4).fill('/api/v1/agents'));

    // A tab in the background polls nothing; back in front it loads at once.
    requests.length = 0;
    const setVisibility = (state: string) =>
      p.evaluate((s) => {
        Object.defineProperty(document, 'visibilityState', { value: s, configurable: true });
        document.dispatchEvent(new Event('visibilitychange'));
      }, state);
    await setVisibility('hidden');
    await p.clock.runFor(60_000);
    await settle();
    expect(requests).toEqual([]);
    await setVisibility('visible');
    await settle();
    expect(requests).toEqual(['/api/v1/agents']);

    // The alerts view: nothing for a minute (its list is pushed over the WebSocket).
    requests.length = 0;
    await p.click('#view-tabs [data-view="alerts"]');
    await p.clock.runFor(60_000);
    await settle();
    expect(requests).toEqual([]);
    await p.close();
    expect(pageErrors).toEqual([]);
  });
});
