import * as grpc from '@grpc/grpc-js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createRootLogger } from '../../shared/log/logger.js';
import { VERSION } from '../../shared/version.js';
import { Tunnel } from './connection.js';
import { parseKasAddress } from './kas-address.js';

// --ca-cert-file is checked when the agent starts, with messages that say what
// to pass; every call carries the token (re-read from --token-file) and the
// agent's version.

const dir = mkdtempSync(join(tmpdir(), 'verdict-tunnel-'));
const silent = createRootLogger({ level: 'silent' });

function capture() {
  const lines: { level: string; msg: string }[] = [];
  const destination = new Writable({
    write(c: Buffer, _e, cb) {
      for (const l of c.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as { level: string; msg: string });
      cb();
    },
  });
  return { log: createRootLogger({ level: 'info', destination }), lines };
}

describe('Tunnel.open', () => {
  it('refuses a --ca-cert-file it cannot use, saying what to pass', async () => {
    await expect(
      Tunnel.open({ address: parseKasAddress('grpcs://verdict.example.com:8150'), token: 't', caCertFile: join(dir, 'missing.pem'), log: silent }),
    ).rejects.toThrow(/cannot read --ca-cert-file .*missing\.pem: .*; pass the PEM file of the CA that signed the server's certificate/);
    const der = join(dir, 'ca.der');
    writeFileSync(der, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
    await expect(
      Tunnel.open({ address: parseKasAddress('wss://verdict.example.com/-/kubernetes-agent/'), token: 't', caCertFile: der, log: silent }),
    ).rejects.toThrow(/holds no PEM certificate .*pass the CA certificate, not a key or a DER file/);
  });

  it('warns that --ca-cert-file does nothing for plain schemes', async () => {
    const { log, lines } = capture();
    const t = await Tunnel.open({ address: parseKasAddress('grpc://127.0.0.1:8150'), token: 't', caCertFile: join(dir, 'missing.pem'), log });
    await t.close();
    expect(lines.map((l) => l.msg)).toContain('--ca-cert-file is ignored: --kas-address does not use TLS (grpcs:// or wss://)');
  });

  it('sends the current token from --token-file and the version with every call', async () => {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'vdt_agent_one\n');
    const { log, lines } = capture();
    const t = await Tunnel.open({ address: parseKasAddress('grpc://127.0.0.1:8150'), token: 'vdt_agent_one', tokenFile, log });
    expect(t.metadata().get('authorization')).toEqual(['Bearer vdt_agent_one']);
    expect(t.metadata().get('verdict-version')).toEqual([VERSION]);
    writeFileSync(tokenFile, 'vdt_agent_two\n');
    expect(t.metadata().get('authorization')).toEqual(['Bearer vdt_agent_two']);
    expect(lines.filter((l) => l.msg === 'The agent token in --token-file changed; using the new one')).toHaveLength(1);
    await t.close();
  });

  it('says which versions to align when the server runs another major.minor, once per server version', async () => {
    const { log, lines } = capture();
    const t = await Tunnel.open({ address: parseKasAddress('grpc://127.0.0.1:8150'), token: 't', log });
    const md = (v: string) => {
      const m = new grpc.Metadata();
      m.set('verdict-version', v);
      return m;
    };
    const [major, minor] = VERSION.split('.');
    t.checkServerVersion(md(`${major}.${minor}.99`), log); // a patch release apart is fine
    t.checkServerVersion(md('9.4.0'), log);
    t.checkServerVersion(md('9.4.0'), log);
    await t.close();
    expect(lines.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual([
      `Server version 9.4.0 and agent version ${VERSION} differ in major.minor; run the same release on both`,
    ]);
  });
});
