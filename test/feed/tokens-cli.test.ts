import type { FastifyInstance } from 'fastify';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FeedTokens } from '../../src/server/auth/feed-tokens.js';
import { buildHttpServer } from '../../src/server/feed/http-server.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ciliumPayload } from '../../src/server/store/test-payloads.js';
import { createRootLogger } from '../../src/shared/log/logger.js';
import { REPO, tempDir, verdictSync } from '../helpers/processes.js';

// Feed tokens made with the built CLI (`verdict tokens create`) against the
// data directory a running server uses: read and write scope do what they say
// at once, and a token revoked with the CLI is refused on the next request.

describe('feed tokens from the CLI', () => {
  const dir = join(tempDir('verdict-tokens-'), 'data');
  const cli = (...args: string[]) => verdictSync(['tokens', ...args, '--data-dir', dir]).trim();
  let app: FastifyInstance;
  let db: ReturnType<typeof openServerDb>;
  let alertId = 0;

  beforeAll(async () => {
    db = openServerDb(dir);
    const store = new AlertStore(db);
    alertId = store.ingest('edge', [{ id: 'cli-1', payload: ciliumPayload({ fp: 'cli' }) }]).alerts[0]!.id;
    app = await buildHttpServer({ store, tokens: new FeedTokens(db), log: createRootLogger({ name: 'test', level: 'silent' }), ready: () => true });
  });
  afterAll(async () => {
    await app?.close();
    db?.close();
  });

  const call = async (method: 'GET' | 'PATCH', url: string, token?: string, payload?: object) => {
    const res = await app.inject({ method, url, payload, headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.statusCode, body: res.json() as { message?: string; alert?: { status: string } } };
  };

  it('creates read and write tokens whose scopes the API enforces (401 without, 403 too small)', async () => {
    const read = cli('create', '--name', 'dashboard');
    const write = cli('create', '--name', 'oncall', '--scope', 'write');
    expect(read).toMatch(/^vdt_feed_\S+$/);
    expect(write).toMatch(/^vdt_feed_\S+$/);
    expect(cli('list')).toMatch(/\tdashboard\tread\t[\s\S]*\toncall\twrite\t/);

    expect((await call('GET', '/api/v1/alerts')).status).toBe(401);
    expect((await call('GET', '/api/v1/alerts', read)).status).toBe(200);
    const denied = await call('PATCH', `/api/v1/alerts/${alertId}`, read, { status: 'acknowledged' });
    expect(denied.status).toBe(403);
    expect(denied.body.message).toMatch(/scope "read".*needs "write"/);
    const ok = await call('PATCH', `/api/v1/alerts/${alertId}`, write, { status: 'acknowledged' });
    expect(ok.status).toBe(200);
    expect(ok.body.alert!.status).toBe('acknowledged');

    const id = /^(\d+)\tdashboard\t/m.exec(cli('list'))![1]!;
    expect(cli('revoke', id)).toBe(`revoked ${id}`);
    expect((await call('GET', '/api/v1/alerts', read)).status).toBe(401);
  });

  it('refuses an unknown scope with what the scopes are', () => {
    let stderr = '';
    try {
      execFileSync(process.execPath, [join(REPO, 'bin/verdict.js'), 'tokens', 'create', '--name', 'x', '--scope', 'root', '--data-dir', dir], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (e) {
      stderr = String((e as { stderr?: string }).stderr);
    }
    expect(stderr).toMatch(/--scope must be one of read, write, admin/);
  });
});
