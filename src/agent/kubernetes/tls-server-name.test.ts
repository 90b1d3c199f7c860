import { readFileSync, writeFileSync } from 'node:fs';
import { request, createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCerts, type Certs } from '../../../test/helpers/certs.js';
import { tempDir } from '../../../test/helpers/processes.js';
import { kubeConnection } from './connection.js';

// A kubeconfig's tls-server-name against a real TLS server whose certificate
// names 127.0.0.1 and localhost: a host name is sent as the TLS ServerName; an
// IP address is not (RFC 6066; Node warns for one) but the certificate must
// still name it.

let certs: Certs;
let api: Server;
let dir: string;
const warnings: string[] = [];
const onWarning = (w: Error & { code?: string }) => warnings.push(`${w.code ?? w.name}: ${w.message}`);

beforeAll(async () => {
  dir = tempDir('verdict-tls-server-name-');
  certs = makeCerts(dir);
  api = createServer({ cert: readFileSync(certs.serverCert), key: readFileSync(certs.serverKey) }, (req, res) => {
    // What the client sent as ServerName: false when it sent none.
    res.end(JSON.stringify({ sni: (req.socket as TLSSocket).servername }));
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  process.on('warning', onWarning);
});

afterAll(() => {
  process.off('warning', onWarning);
  api.close();
});

async function get(serverName: string): Promise<{ sni: string | false }> {
  const file = `${dir}/kubeconfig-${serverName}`;
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:${(api.address() as AddressInfo).port}", certificate-authority: ${certs.ca}, tls-server-name: "${serverName}"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`,
  );
  const kube = kubeConnection({ kubeconfig: file });
  const opts = await kube.requestOptions();
  const url = new URL(kube.server);
  return new Promise((resolve, reject) => {
    request({ ...opts, hostname: url.hostname, port: url.port, path: '/version' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(JSON.parse(body) as { sni: string | false }));
    })
      .on('error', reject)
      .end();
  });
}

describe('tls-server-name', () => {
  it('an IP address: no ServerName sent, no warning, the certificate checked against the IP', async () => {
    expect(await get('127.0.0.1')).toEqual({ sni: false });
    await new Promise((r) => setImmediate(r));
    expect(warnings.filter((w) => /DEP0123|RFC 6066/.test(w))).toEqual([]);
  });

  it('an IP address the certificate does not name is refused', async () => {
    await expect(get('127.0.0.2')).rejects.toThrow(/IP: 127\.0\.0\.2 is not in the cert's list/);
  });

  it('a host name is sent as the ServerName', async () => {
    expect(await get('localhost')).toEqual({ sni: 'localhost' });
  });
});
