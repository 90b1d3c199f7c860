import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InFlight } from './in-flight.js';

// Against a real HTTP server that answers /now at once and holds /hold open:
// a request leaves the set when it closes, and destroyAll() ends those still open.

const held: ServerResponse[] = [];
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/hold') {
    res.writeHead(200);
    res.write('x');
    held.push(res);
  } else res.end('done');
});
let port = 0;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const r of held) r.destroy();
  await new Promise((resolve) => server.close(resolve));
});

function send(open: InFlight, path: string): Promise<string> {
  return new Promise((resolve) => {
    const req = open.add(request({ host: '127.0.0.1', port, path }));
    req.on('response', (res) => {
      res.on('error', () => {});
      res.on('end', () => resolve('complete'));
      res.resume();
    });
    req.on('error', (e) => resolve(`error: ${e.message}`));
    req.end();
  });
}

/** Waits for cond, at most 2 s: a request closes on its socket's close, a turn or more after its 'error' or 'end'. */
async function until(cond: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 2000; !cond() && Date.now() < deadline; ) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('InFlight', () => {
  it('forgets a request once it closes, and ends the open ones on destroyAll()', async () => {
    const open = new InFlight();
    expect(await send(open, '/now')).toBe('complete');
    await until(() => open.size === 0);
    expect(open.size).toBe(0);
    const holding = [send(open, '/hold'), send(open, '/hold')];
    await until(() => held.length === 2);
    expect(open.size).toBe(2);
    open.destroyAll(new Error('closing'));
    expect(await Promise.all(holding)).toEqual(['error: closing', 'error: closing']);
    await until(() => open.size === 0);
    expect(open.size).toBe(0);
  });
});
