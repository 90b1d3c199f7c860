import type { FastifyInstance } from 'fastify';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '../shared/log/logger.js';
import { FeedTokens } from './auth/feed-tokens.js';
import { buildHttpServer } from './feed/http-server.js';
import { AlertStore } from './store/alert-store.js';
import { openServerDb } from './store/server-db.js';

// A request Node refuses on a connection whose earlier response is still being
// written: an answer written then would land inside that response's body.

describe('refusing a request Node cannot read (clientError)', () => {
  const db = openServerDb(':memory:');
  let app: FastifyInstance;
  let port = 0;
  const held: (() => void)[] = [];

  beforeAll(async () => {
    app = await buildHttpServer({
      store: new AlertStore(db),
      tokens: new FeedTokens(db),
      log: createRootLogger({ name: 'test', level: 'silent' }),
      ready: () => true,
    });
    // A response whose head is sent and whose body is still coming, as a slow download is.
    app.get('/test/held', { schema: { hide: true } as never }, (_req, reply) => {
      reply.hijack();
      reply.raw.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      reply.raw.write('first part;');
      held.push(() => reply.raw.end('last part'));
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    port = (app.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    for (const end of held) end();
    await app.close();
    db.close();
  });

  /** Everything the server sends on one connection until it closes it. */
  const session = () => {
    const socket: Socket = connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d) => {
      received += d.toString();
    });
    const closed = new Promise<string>((resolve) => {
      socket.on('close', () => resolve(received));
      socket.on('error', () => undefined);
    });
    const until = async (text: string) => {
      while (!received.includes(text)) await new Promise((r) => setTimeout(r, 10));
    };
    return { socket, closed, until };
  };

  it('closes, without writing a 400 into it, a connection whose response is under way', async () => {
    const s = session();
    s.socket.write('GET /test/held HTTP/1.1\r\nHost: x\r\n\r\n');
    await s.until('first part;');
    s.socket.write('NOT HTTP\r\n\r\n');
    const received = await s.closed;
    expect(received).toMatch(/^HTTP\/1\.1 200 /);
    expect(received).toContain('first part;');
    expect(received).not.toContain('HTTP/1.1 400');
  });

  it('answers 400 on a kept-alive connection whose earlier response is complete', async () => {
    const s = session();
    s.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await s.until('"ok"');
    s.socket.write('NOT HTTP\r\n\r\n');
    const received = await s.closed;
    expect(received).toMatch(/^HTTP\/1\.1 200 .*HTTP\/1\.1 400 Bad Request\r\n.*"error":"bad_request"/s);
  });
});
