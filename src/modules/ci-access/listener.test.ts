import { mkdtempSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../server/server.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { freePort } from '../../../test/helpers/processes.js';

// What the Kubernetes API listener says to a request Node refuses before the
// proxy sees it: kubectl prints a Status, where a closed socket tells it nothing.

describe('Kubernetes API proxy listener: requests Node refuses', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-ci-listener-'));
  let server: RunningServer;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    server = await startServer(
      {
        data_dir: join(dir, 'server'),
        http_addr: '127.0.0.1:0',
        grpc_addr: '127.0.0.1:0',
        config_poll_interval: 100,
        kubernetes_api: { listen: `127.0.0.1:${port}`, url_path_prefix: '/k8s-proxy/', url: undefined },
      },
      createRootLogger({ level: 'silent' }),
    );
  });
  afterAll(async () => {
    await server?.close();
  });

  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end(request));
      let answer = '';
      socket.on('data', (d) => {
        answer += d.toString();
      });
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
    });
  const body = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;

  it('answers headers over the limit with a 431 Status', async () => {
    const answer = await raw(`GET /k8s-proxy/api HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(body(answer)).toMatchObject({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 431 });
    expect(body(answer).message).toMatch(/^Verdict server: the request line and headers are over 16 KiB.*; send/);
  });

  it('answers what is not HTTP with a 400 Status', async () => {
    const answer = await raw('NOT HTTP\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(body(answer)).toMatchObject({ kind: 'Status', status: 'Failure', reason: 'BadRequest', code: 400 });
  });
});
