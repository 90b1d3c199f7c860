import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Certificates for tests that speak TLS, made with openssl for this run only.

export interface Certs {
  dir: string;
  /** The CA certificate that signed both others. */
  ca: string;
  /** For 127.0.0.1 and localhost. */
  serverCert: string;
  serverKey: string;
  /** For mutual TLS. */
  clientCert: string;
  clientKey: string;
}

/**
 * A CA of its own (P-256 keys, valid 2 days) in `dir`, and a server and a client
 * certificate it signed. Each call makes a new CA: certificates from two calls do
 * not verify against each other's CA. `name` is the CA's common name.
 */
export function makeCerts(dir: string, name = 'verdict test CA'): Certs {
  mkdirSync(dir, { recursive: true });
  const ossl = (...args: string[]) => {
    try {
      execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
      if (err.code === 'ENOENT') throw new Error('openssl is needed for the TLS tests: apt-get install openssl');
      throw new Error(`openssl ${args[0]} failed: ${err.stderr?.toString() || err.message}`);
    }
  };
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ossl('req', '-x509', ...ec, '-days', '2', '-subj', `/CN=${name}`, '-keyout', 'ca.key', '-out', 'ca.crt');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    ossl('req', ...ec, '-subj', `/CN=${who === 'server' ? 'localhost' : 'client'}`, '-keyout', `${who}.key`, '-out', `${who}.csr`);
    ossl(
      'x509',
      '-req',
      '-in',
      `${who}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${who}.ext`,
      '-out',
      `${who}.crt`,
    );
  }
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
}
