import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../server.js';
import { createRootLogger } from '../../shared/log/logger.js';

// Every route of the API refuses a query parameter it does not take, as
// docs/feed.md says: a misspelt one silently ignored answers something else
// than was asked (?limit=1 on a list that has no limit returns everything).

describe('unknown query parameters', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-query-'));
  let server: RunningServer;
  let admin: string;
  const get = async (path: string, token = admin) => {
    const res = await fetch(`http://${server.httpAddress}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.status, body: (await res.json()) as { error?: string; message?: string } };
  };

  beforeAll(async () => {
    server = await startServer(
      { data_dir: join(dir, 'server'), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', config_poll_interval: 100 },
      createRootLogger({ level: 'silent' }),
    );
    admin = server.tokens.create('root', 'admin').token;
  });
  afterAll(async () => {
    await server?.close();
  });

  it.each(['/api/v1/admin/ci-tokens', '/api/v1/admin/feed-tokens', '/api/v1/agents', '/api/v1/admin/agents'])(
    '%s refuses ?limit=1 and ?bogus=1',
    async (path) => {
      expect((await get(path)).status).toBe(200);
      for (const q of ['limit=1', 'bogus=1']) {
        const name = q.split('=')[0];
        expect(await get(`${path}?${q}`), `${path}?${q}`).toEqual({
          status: 400,
          body: { error: 'bad_request', message: `unknown query parameter "${name}"; this route takes none` },
        });
      }
      // The token in the URL is a way to authenticate, not a parameter.
      expect((await get(`${path}?access_token=${admin}`, '')).status).toBe(200);
    },
  );

  // Routes that declare no query string of their own: the API's schema helper gives them none.
  it.each([
    ['GET', '/api/v1/admin/agents/edge-1/tokens'],
    ['GET', '/api/v1/admin/integrations'],
    ['GET', '/api/v1/alerts/1'],
    ['GET', '/api/v1/agents/edge-1'],
    ['DELETE', '/api/v1/admin/feed-tokens/999'],
  ])('%s %s refuses ?limit=1 and takes ?access_token=', async (method, path) => {
    const call = async (q: string, token = admin) => {
      const res = await fetch(`http://${server.httpAddress}${path}${q}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
      return { status: res.status, body: (await res.json()) as { error?: string; message?: string } };
    };
    // Whatever the route answers without a parameter (a missing agent or alert is 404), never 400.
    const plain = (await call('')).status;
    expect(plain).not.toBe(400);
    expect(await call('?limit=1'), `${method} ${path}?limit=1`).toEqual({
      status: 400,
      body: { error: 'bad_request', message: 'unknown query parameter "limit"; this route takes none' },
    });
    expect((await call(`?access_token=${admin}`, '')).status).toBe(plain);
  });

  it('names the parameters a route takes, as the alerts routes always did', async () => {
    expect(await get('/api/v1/alerts?statuses=triggered')).toEqual({
      status: 400,
      body: { error: 'bad_request', message: expect.stringMatching(/^unknown query parameter "statuses"; known: status, severity, .*cursor$/) },
    });
    expect((await get(`/api/v1/alerts?access_token=${admin}`, '')).status).toBe(200);
  });
});
