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

  it('names the parameters a route takes, as the alerts routes always did', async () => {
    expect(await get('/api/v1/alerts?statuses=triggered')).toEqual({
      status: 400,
      body: { error: 'bad_request', message: expect.stringMatching(/^unknown query parameter "statuses"; known: status, severity, .*cursor$/) },
    });
    expect((await get(`/api/v1/alerts?access_token=${admin}`, '')).status).toBe(200);
  });
});
