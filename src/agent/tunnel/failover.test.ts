import { connect, createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FailoverForwarder } from './failover.js';
import { parseKasAddress } from './kas-address.js';
import { freePort } from '../../../test/helpers/processes.js';

const servers: Server[] = [];

/** A server that answers every connection with its name. */
async function named(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end(name));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  servers.push(server);
  return { server, port: (server.address() as { port: number }).port };
}

function ask(target: string): Promise<string> {
  const i = target.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)) });
    let got = '';
    s.on('data', (d) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
}

afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

describe('FailoverForwarder (several --kas-address values)', () => {
  it('goes to the first address that accepts, stays there, and moves on when it goes away', async () => {
    const dead = await freePort();
    const a = await named('a');
    const b = await named('b');
    const switched: string[] = [];
    const f = await FailoverForwarder.start(
      [dead, a.port, b.port].map((p) => parseKasAddress(`grpc://127.0.0.1:${p}`)),
      (to, why) => switched.push(`${to.raw} ${why}`),
    );
    try {
      expect(await ask(f.target)).toBe('a');
      expect(switched).toEqual([expect.stringMatching(new RegExp(`^grpc://127.0.0.1:${a.port} connection refused by grpc://127.0.0.1:${dead}`))]);
      expect(await ask(f.target)).toBe('a');
      await new Promise((r) => a.server.close(r));
      expect(await ask(f.target)).toBe('b');
      expect(f.current.raw).toBe(`grpc://127.0.0.1:${b.port}`);
      expect(switched).toHaveLength(2);
      await new Promise((r) => b.server.close(r));
      expect(await ask(f.target)).toBe('');
      expect(f.lastError()).toMatch(/none of the --kas-address values accepts a connection: connection refused by/);
    } finally {
      await f.close();
    }
  });
});
