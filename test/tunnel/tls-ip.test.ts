import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from '../helpers/certs.js';
import { killAll, tempDir, type LogLine } from '../helpers/processes.js';
import { prepareServer, ServerProc, spawnAgent } from './harness.js';

// grpcs:// to an IP literal: no TLS ServerName is sent for it (RFC 6066 allows
// host names only, and Node warns on every start otherwise), and the server's
// certificate is still checked against the IP.

const errorLog = (l: LogLine) => typeof l.error === 'string';

/** A TCP pass-through on another loopback IP, so the agent dials an IP the certificate does not name. */
function relayOn(host: string, to: number): Promise<Server> {
  const s = createServer((c) => {
    const up = connect(to, '127.0.0.1');
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  return new Promise((resolve) => s.listen(0, host, () => resolve(s)));
}

describe('grpcs:// to an IP address', () => {
  const dir = tempDir();
  let certs: Certs;
  let server: ServerProc;
  let tokenFile = '';
  let relay: Server | undefined;
  beforeAll(async () => {
    certs = makeCerts(dir);
    ({ tokenFile } = prepareServer(dir));
    server = await ServerProc.start(join(dir, 'server'), certs);
  });
  afterAll(async () => {
    relay?.close();
    await killAll();
  });

  it('connects to a certificate naming the IP without the RFC 6066 ServerName warning', async () => {
    const agent = spawnAgent(`grpcs://127.0.0.1:${server.grpc}`, tokenFile, join(dir, 'ip'), ['--ca-cert-file', certs.ca]);
    await agent.waitForLog((l) => l.msg === 'Config: applying new configuration', 20_000, 'configuration over grpcs://127.0.0.1');
    await agent.kill();
    expect(agent.stderr).not.toMatch(/DeprecationWarning|RFC 6066|ServerName/);
  });

  it('does the same through the failover forwarder (several --kas-address)', async () => {
    const kas = `grpcs://127.0.0.1:${server.grpc}`;
    const agent = spawnAgent(kas, tokenFile, join(dir, 'ip-failover'), ['--kas-address', kas, '--ca-cert-file', certs.ca]);
    await agent.waitForLog((l) => l.msg === 'Config: applying new configuration', 20_000, 'configuration over two grpcs://127.0.0.1 addresses');
    await agent.kill();
    expect(agent.stderr).not.toMatch(/DeprecationWarning|RFC 6066|ServerName/);
  });

  it('still refuses a certificate that does not name the IP dialled', async () => {
    relay = await relayOn('127.0.0.2', server.grpc);
    const port = (relay.address() as { port: number }).port;
    const agent = spawnAgent(`grpcs://127.0.0.2:${port}`, tokenFile, join(dir, 'other-ip'), ['--ca-cert-file', certs.ca]);
    const l = await agent.waitForLog(errorLog, 20_000, 'the refused certificate');
    await agent.kill();
    expect(l.error).toMatch(/the server's certificate is not valid for "127\.0\.0\.2".*IP: 127\.0\.0\.2 is not in the cert's list/);
    expect(agent.logs.some((x) => x.msg === 'Config: applying new configuration')).toBe(false);
  });
});
