import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, killAll, spawnVerdict } from '../../test/helpers/processes.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../shared/config/server-config.js';
import { createRootLogger } from '../shared/log/logger.js';
import { startServer } from './server.js';

afterAll(killAll);

function start(cfg: Partial<ServerConfig>) {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-server-start-'));
  return startServer({ ...SERVER_DEFAULTS, data_dir: dir, http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', ...cfg }, createRootLogger({ level: 'silent' }));
}

describe('startServer', () => {
  it.each(['http', 'grpc'] as const)('closes what it opened when a listener cannot bind (%s address taken)', async (which) => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-server-start-'));
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      await expect(
        start({
          data_dir: dir,
          http_addr: which === 'http' ? `127.0.0.1:${port}` : '127.0.0.1:0',
          grpc_addr: which === 'grpc' ? `127.0.0.1:${port}` : '127.0.0.1:0',
        }),
      ).rejects.toThrow(
        which === 'http'
          ? `cannot listen for HTTP on 127.0.0.1:${port}: the address is in use by another process; stop it, or set http_addr (--http-addr) to a free port`
          : `cannot listen for agents on 127.0.0.1:${port}: the address is in use by another process; stop it, or set grpc_addr (--grpc-addr) to a free port`,
      );
      // SQLite removes the WAL file when the last connection closes: the database (and the webhooks that use it) were closed.
      expect(existsSync(join(dir, 'server.db'))).toBe(true);
      expect(existsSync(join(dir, 'server.db-wal'))).toBe(false);
    } finally {
      taken.close();
    }
  });

  // "Pick a free address" is no help when the host is not this machine's: the error says which it is.
  it.each([
    ['http', 'nosuchhost.invalid', 'the host name nosuchhost.invalid does not resolve'],
    ['grpc', 'nosuchhost.invalid', 'the host name nosuchhost.invalid does not resolve'],
    // TEST-NET-1 (RFC 5737): no machine has it.
    ['http', '192.0.2.1', '192.0.2.1 is not an address of this machine'],
    ['grpc', '192.0.2.1', '192.0.2.1 is not an address of this machine'],
  ] as const)('says why a %s listener cannot bind %s, and to use an address of this machine', async (which, host, why) => {
    const setting = which === 'http' ? 'http_addr (--http-addr)' : 'grpc_addr (--grpc-addr)';
    await expect(start({ [`${which}_addr`]: `${host}:18080` })).rejects.toThrow(
      `cannot listen for ${which === 'http' ? 'HTTP' : 'agents'} on ${host}:18080: ${why}; set ${setting} to an address of this machine, e.g. 0.0.0.0:18080 (every interface) or 127.0.0.1:18080 (this machine only)`,
    );
  });

  it('refuses a data_dir that is a file, saying so', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'verdict-server-start-')), 'a-file');
    writeFileSync(file, 'x');
    await expect(start({ data_dir: file })).rejects.toThrow(
      `cannot create the data directory ${file}: ${file} is a file, not a directory; give --data-dir (data_dir in a server config file) a directory this user can write to`,
    );
    await expect(start({ data_dir: join(file, 'below') })).rejects.toThrow(`: ${file} is a file, not a directory;`);
  });
});

describe('verdict server start-up failures', () => {
  // grpc-js sets SO_REUSEPORT unless told not to: a second server bound the agent API's port beside the first.
  it('refuses the agent API port of a running server, saying the address is in use', async () => {
    const grpcPort = await freePort();
    const args = (dir: string) => ['server', '--data-dir', dir, '--http-addr', '127.0.0.1:0', '--grpc-addr', `127.0.0.1:${grpcPort}`];
    const first = spawnVerdict(args(mkdtempSync(join(tmpdir(), 'verdict-server-start-'))), 'server-1');
    try {
      await first.waitForLog((l) => l.msg === 'Verdict server started');
      const second = spawnVerdict(args(mkdtempSync(join(tmpdir(), 'verdict-server-start-'))), 'server-2');
      expect(await second.exited).toBe(1);
      expect(second.logs.filter((l) => l.level === 'error')).toEqual([
        expect.objectContaining({ error: expect.stringContaining(`cannot listen for agents on 127.0.0.1:${grpcPort}: the address is in use`) }),
      ]);
    } finally {
      await first.kill();
    }
  }, 30_000);

  // Node's mkdir { recursive: true } spun forever on procfs (ENOENT for /proc/x, EEXIST for /proc) and, being synchronous, did not even see SIGTERM.
  it.runIf(existsSync('/proc/self'))(
    'fails at once when the data directory cannot be made (under /proc)',
    async () => {
      const server = spawnVerdict(
        ['server', '--data-dir', '/proc/verdict-nope/data', '--http-addr', `127.0.0.1:${await freePort()}`, '--grpc-addr', `127.0.0.1:${await freePort()}`],
        'server',
      );
      // A regression spins in mkdir and never exits: the test's own timeout ends it (killAll in afterAll).
      expect(await server.exited).toBe(1);
      expect(server.logs.at(-1)).toMatchObject({
        level: 'error',
        error:
          'cannot create the data directory /proc/verdict-nope/data: the file system of /proc does not allow new directories; give --data-dir (data_dir in a server config file) a directory this user can write to',
      });
    },
    20_000,
  );

  it('writes only pino JSON when the agent API port is taken (grpc-js logs through pino)', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const server = spawnVerdict(
        [
          'server',
          '--data-dir',
          mkdtempSync(join(tmpdir(), 'verdict-server-start-')),
          '--http-addr',
          `127.0.0.1:${await freePort()}`,
          '--grpc-addr',
          `127.0.0.1:${port}`,
        ],
        'server',
      );
      expect(await server.exited).toBe(1);
      const lines = (server.stdout + server.stderr).split('\n').filter(Boolean);
      for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
      expect(server.logs.filter((l) => l.level === 'error')).toEqual([
        expect.objectContaining({ error: expect.stringContaining(`cannot listen for agents on 127.0.0.1:${port}: the address is in use`) }),
      ]);
    } finally {
      taken.close();
    }
  }, 20_000);
});
