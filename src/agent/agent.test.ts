import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createRootLogger } from '../shared/log/logger.js';
import { startAgent } from './agent.js';

describe('startAgent', () => {
  it('closes what it opened when start-up fails halfway (observability address taken)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agent-start-'));
    writeFileSync(join(dir, 'token'), 'secret-token');
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        startAgent(
          {
            kasAddress: 'grpc://127.0.0.1:1',
            tokenFile: join(dir, 'token'),
            dataDir: join(dir, 'data'),
            observabilityAddr: `127.0.0.1:${port}`,
            spoolMaxBytes: 1 << 20,
            backoff: { initialMs: 10, maxMs: 10 },
            modules: [],
          },
          createRootLogger({ level: 'silent' }),
        ),
      ).rejects.toThrow(/cannot listen on --observability-addr .*pick a free address/);
      // SQLite removes the WAL file when the last connection closes: the database was closed.
      expect(existsSync(join(dir, 'data', 'agent.db'))).toBe(true);
      expect(existsSync(join(dir, 'data', 'agent.db-wal'))).toBe(false);
    } finally {
      taken.close();
    }
  });
});
