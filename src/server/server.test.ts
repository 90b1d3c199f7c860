import { existsSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { createRootLogger } from '../shared/log/logger.js';
import { startServer } from './server.js';

describe('startServer', () => {
  it.each(['http', 'grpc'] as const)('closes what it opened when a listener cannot bind (%s address taken)', async (which) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-server-start-'));
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        startServer(
          {
            ...SERVER_DEFAULTS,
            data_dir: dir,
            http_addr: which === 'http' ? `127.0.0.1:${port}` : '127.0.0.1:0',
            grpc_addr: which === 'grpc' ? `127.0.0.1:${port}` : '127.0.0.1:0',
          },
          createRootLogger({ level: 'silent' }),
        ),
      ).rejects.toThrow(
        which === 'http'
          ? /cannot listen for HTTP on .*pick a free address with --http-addr/
          : /cannot listen for agents on .*pick a free address with --grpc-addr/,
      );
      // SQLite removes the WAL file when the last connection closes: the database (and the webhooks that use it) were closed.
      expect(existsSync(join(dir, 'server.db'))).toBe(true);
      expect(existsSync(join(dir, 'server.db-wal'))).toBe(false);
    } finally {
      taken.close();
    }
  });
});
