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
      ).rejects.toThrow(
        `cannot listen for /metrics and probes on 127.0.0.1:${port}: the address is in use by another process; stop it, or set --observability-addr to a free port; or set it to "" to turn the listener off`,
      );
      // SQLite removes the WAL file when the last connection closes: the database was closed.
      expect(existsSync(join(dir, 'data', 'agent.db'))).toBe(true);
      expect(existsSync(join(dir, 'data', 'agent.db-wal'))).toBe(false);
    } finally {
      taken.close();
    }
  });

  it('refuses a --data-dir that is a file, saying so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-agent-start-'));
    writeFileSync(join(dir, 'token'), 'secret-token');
    writeFileSync(join(dir, 'a-file'), 'x');
    await expect(
      startAgent(
        {
          kasAddress: 'grpc://127.0.0.1:1',
          tokenFile: join(dir, 'token'),
          dataDir: join(dir, 'a-file'),
          observabilityAddr: '',
          spoolMaxBytes: 1 << 20,
          backoff: { initialMs: 10, maxMs: 10 },
          modules: [],
        },
        createRootLogger({ level: 'silent' }),
      ),
    ).rejects.toThrow(`cannot create the data directory ${join(dir, 'a-file')}: ${join(dir, 'a-file')} is a file, not a directory;`);
  });
});
