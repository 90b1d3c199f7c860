import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ciliumPayload, falcoPayload } from '../../src/server/store/test-payloads.js';
import { ConfigProject, freePort, killAll, REPO, spawnVerdict, tempDir, type VerdictProcess } from '../helpers/processes.js';
import { Receiver } from '../webhooks/receiver.js';

// The HTTP API does what its OpenAPI document says: Schemathesis generates
// requests from /api/v1/openapi.json, valid and invalid, against a real server
// with alerts in it, and runs every check (status codes, response schemas,
// valid requests accepted, invalid ones refused, 405 for undeclared methods...).
// Settings and hooks: test/api/schemathesis.toml, test/api/schemathesis_hooks.py.

const SCRIPT = join(REPO, 'scripts/schemathesis.sh');
/** Cases per operation: under a minute on two idle cores, a few minutes when they are shared. */
const MAX_EXAMPLES = Number(process.env.VERDICT_SCHEMATHESIS_EXAMPLES ?? 50);
const SEED = process.env.VERDICT_SCHEMATHESIS_SEED ?? '1';

describe('the HTTP API against its OpenAPI document (schemathesis --checks all)', () => {
  const dir = tempDir('verdict-schemathesis-');
  let server: VerdictProcess;
  let url = '';
  let token = '';
  let tokenId = 0;
  const project = new ConfigProject(join(dir, 'config-project'));
  // Webhook integrations to test against: one from the config file (read-only there), one made over the API.
  const rx = new Receiver();
  const integrations = ['from-file', 'from-api'];

  beforeAll(async () => {
    try {
      execFileSync('bash', [SCRIPT, 'path'], { stdio: 'pipe' });
    } catch {
      throw new Error('schemathesis is not installed; run: bash scripts/schemathesis.sh install');
    }
    project.commit({ '.gitlab/agents/edge/config.yaml': 'cilium: {}\n' });
    const data = join(dir, 'data');
    const db = openServerDb(data);
    const store = new AlertStore(db);
    const t = Date.now() - 60_000;
    store.ingest('edge', [
      ...['shop', 'db', 'payments'].map((ns, i) => ({
        id: `c-${i}`,
        payload: ciliumPayload({ fp: `c-${ns}`, ns, time: new Date(t + i * 1000).toISOString(), severity: i ? 'high' : 'medium' }),
      })),
      ...['shop', 'kube-system'].map((ns, i) => ({
        id: `f-${i}`,
        payload: falcoPayload({ fp: `f-${ns}`, ns, time: new Date(t + 5000 + i * 1000).toISOString() }),
      })),
    ]);
    const admin = new FeedTokens(db).create('schemathesis', 'admin');
    token = admin.token;
    tokenId = admin.info.id;
    db.close();
    await rx.listen();
    const config = join(dir, 'server.yaml');
    writeFileSync(
      config,
      JSON.stringify({
        webhooks: { allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'from-file', type: 'slack', url: rx.url('/services/T/B/file') }] },
      }),
    );
    const port = await freePort();
    server = spawnVerdict(['server', '--config', config, '--data-dir', data, '--http-addr', `127.0.0.1:${port}`, '--grpc-addr', '127.0.0.1:0'], 'server');
    await server.waitForLog((l) => l.msg === 'Verdict server started');
    url = `http://127.0.0.1:${port}`;
    const made = await fetch(`${url}/api/v1/admin/integrations`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'from-api', type: 'slack', url: rx.url('/services/T/B/api') }),
    });
    expect(made.status).toBe(201);
  });
  afterAll(async () => {
    await killAll();
    await rx.close();
  });

  it('finds no failures and no server errors', async () => {
    // Real list cursors for the hooks, one per sort order (see schemathesis_hooks.py).
    const cursors: Record<string, string> = {};
    for (const sort of ['last_seen', 'created', 'severity', 'count']) {
      for (const order of ['desc', 'asc']) {
        const res = await fetch(`${url}/api/v1/alerts?limit=1&sort=${sort}&order=${order}`, { headers: { authorization: `Bearer ${token}` } });
        cursors[`${sort}.${order}`] = ((await res.json()) as { next_cursor: string }).next_cursor;
      }
    }
    const reports = mkdtempSync(join(dir, 'reports-'));
    const run = await new Promise<{ code: number; out: string }>((resolve) => {
      execFile(
        'bash',
        [SCRIPT, 'run', url, token, '--max-examples', String(MAX_EXAMPLES), '--seed', SEED, '--no-color', '--report', 'junit', '--report-dir', reports],
        {
          cwd: dir,
          env: { ...process.env, VERDICT_SCHEMATHESIS_DATA: JSON.stringify({ cursors, config_project: project.dir, admin_token_id: tokenId, integrations }) },
          maxBuffer: 64 * 1024 * 1024,
          timeout: 280_000,
        },
        (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
      );
    });
    const report = readdirSync(reports).find((f) => f.endsWith('.xml'));
    const suite = report ? /<testsuite\b[^>]*>/.exec(readFileSync(join(reports, report), 'utf8'))?.[0] : undefined;
    // A run stopped by the timeout (a machine far too busy) leaves no complete report: say so with its output.
    if (!suite) throw new Error(`schemathesis left no complete JUnit report (exit ${run.code}):\n${run.out.slice(-5_000)}`);
    const attr = (name: string) => Number(new RegExp(`\\b${name}="(\\d+)"`).exec(suite)?.[1] ?? NaN);
    const serverErrors = server.logs.filter((l) => l.level === 'error' || l.level === 'fatal');
    const why = `schemathesis output:\n${run.out.slice(-20_000)}\nserver errors:\n${serverErrors.map((l) => JSON.stringify(l)).join('\n')}`;
    expect(attr('tests'), why).toBeGreaterThan(20);
    expect({ failures: attr('failures'), errors: attr('errors'), exit: run.code, serverErrors: serverErrors.length }, why).toEqual({
      failures: 0,
      errors: 0,
      exit: 0,
      serverErrors: 0,
    });
  }, 300_000);
});
