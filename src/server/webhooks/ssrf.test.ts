import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newAgent, send } from './sender.js';
import { AddressPolicy, restrictedReason } from '../../shared/net/ssrf.js';

describe('restricted addresses', () => {
  it.each([
    ['127.0.0.1', /loopback/],
    ['127.9.9.9', /loopback/],
    ['::1', /loopback/],
    ['10.1.2.3', /private/],
    ['172.16.0.1', /private/],
    ['172.31.255.255', /private/],
    ['192.168.1.1', /private/],
    ['169.254.169.254', /metadata/],
    ['100.100.100.200', /metadata/],
    ['168.63.129.16', /metadata/],
    ['fd00:ec2::254', /metadata/],
    ['fe80::1', /link-local/],
    ['0.0.0.0', /unspecified/],
    ['::', /unspecified/],
    ['::ffff:127.0.0.1', /loopback/],
    ['::ffff:169.254.169.254', /metadata/],
    ['64:ff9b::a9fe:a9fe', /metadata.*NAT64/],
    ['224.0.0.1', /multicast/],
    // IPv6 forms that carry a restricted IPv4 address, as URL literals come out of new URL().
    ['::ffff:7f00:1', /loopback/],
    ['::7f00:1', /IPv4-compatible/],
    ['::ffff:0:7f00:1', /loopback.*SIIT/],
    ['2002:a9fe:a9fe::1', /metadata.*6to4/],
    ['2002:a00:1::', /private.*6to4/],
    ['64:ff9b::10.0.0.1', /private.*NAT64/],
    ['fec0::1', /site-local/],
  ])('%s is refused (%s)', (ip, why) => {
    expect(restrictedReason(ip)).toMatch(why);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '2606:4700:4700::1111', '64:ff9b::808:808', '2002:808:808::1', '::ffff:0:808:808'])('%s is public', (ip) => {
    expect(restrictedReason(ip)).toBeUndefined();
  });
});

describe('URL literals in every spelling', () => {
  it.each([
    'http://127.1/',
    'http://2130706433/',
    'http://0x7f.0.0.1/',
    'http://[::ffff:127.0.0.1]/',
    'http://[0:0:0:0:0:ffff:7f00:1]/',
    'http://[::127.0.0.1]/',
    'http://[64:ff9b::169.254.169.254]/',
    'http://[2002:a9fe:a9fe::]/',
    'http://0251.0376.0251.0376/',
    'http://[fd00:ec2::254]/',
  ])('%s is refused before connecting', (u) => {
    expect(new AddressPolicy([]).checkLiteral(new URL(u))).toMatch(/refused to deliver to .*allow_private_addresses/);
  });
});

describe('AddressPolicy', () => {
  it('allows what the operator lists: an IP, a network or a host name', () => {
    const p = new AddressPolicy(['127.0.0.1', '10.0.0.0/8', 'Hooks.Internal']);
    expect(p.check('127.0.0.1', '127.0.0.1')).toBeUndefined();
    expect(p.check('x', '10.9.8.7')).toBeUndefined();
    expect(p.check('hooks.internal.', '192.168.0.9')).toBeUndefined();
    expect(p.check('other', '192.168.0.9')).toMatch(
      /refused to deliver to other \(192\.168\.0\.9\): it is a private address.*add "192\.168\.0\.9".*webhooks\.allow_private_addresses/,
    );
    expect(p.check('x', '127.0.0.2')).toMatch(/loopback/);
  });

  it('checks the address a name resolves to at connect time', async () => {
    const refused = new AddressPolicy([]);
    const err = await new Promise<Error | null>((resolve) => refused.lookup('localhost', { all: true }, (e) => resolve(e)));
    expect(err?.message).toMatch(/refused to deliver to localhost \((127\.0\.0\.1|::1)\): it is a loopback address/);
    const allowed = new AddressPolicy(['localhost']);
    const got = await new Promise<unknown>((resolve) => allowed.lookup('localhost', {}, (_e, a) => resolve(a)));
    expect(got).toMatch(/^(127\.0\.0\.1|::1)$/);
  });
});

describe('send() refuses before any byte is sent', () => {
  let hits = 0;
  const server = createServer((_q, r) => {
    hits++;
    r.end('ok');
  });
  let port = 0;
  beforeAll(async () => {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const post = (url: string, policy: AddressPolicy) =>
    send({ url: new URL(url), body: '{}', headers: {}, timeoutMs: 2000, policy, agent: newAgent(new URL(url), 1) });

  it('for a literal loopback IP, a name resolving to loopback, and passes when allowed', async () => {
    const none = new AddressPolicy([]);
    const a = await post(`http://127.0.0.1:${port}/`, none);
    expect(a).toMatchObject({ ok: false, reason: 'refused_address' });
    const b = await post(`http://localhost:${port}/`, none);
    expect(b).toMatchObject({ ok: false, reason: 'refused_address' });
    expect(b.error).toMatch(/allow_private_addresses/);
    expect(hits).toBe(0);
    const c = await post(`http://127.0.0.1:${port}/`, new AddressPolicy(['127.0.0.1']));
    expect(c).toMatchObject({ ok: true, status: 200 });
    expect(hits).toBe(1);
  });
});

describe('DNS rebinding', () => {
  it('refuses at connect time a name that resolved to a public address when it was checked', async () => {
    let calls = 0;
    let connections = 0;
    const server = createServer((_q, r) => r.end('ok')).on('connection', () => connections++);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    // First answer public (the admin API's check), then loopback (the attacker's rebind).
    const fakeDns = ((_h: string, _o: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) => {
      cb(null, [{ address: calls++ === 0 ? '93.184.216.34' : '127.0.0.1', family: 4 }]);
    }) as unknown as ConstructorParameters<typeof AddressPolicy>[1];
    const policy = new AddressPolicy([], fakeDns);
    const url = new URL(`http://hooks.example.com:${port}/x`);
    expect(await policy.checkUrl(url)).toBeUndefined();
    const res = await send({ url, body: '{}', headers: {}, timeoutMs: 2000, policy, agent: newAgent(url, 1) });
    expect(res).toMatchObject({ ok: false, reason: 'refused_address' });
    expect(res.error).toMatch(/hooks\.example\.com \(127\.0\.0\.1\): it is a loopback address/);
    expect(connections).toBe(0);
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('refuses early (admin API) a name that resolves to a restricted address, and allows it when listed', async () => {
    const fakeDns = ((_h: string, _o: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [
        { address: '10.0.0.5', family: 4 },
        { address: 'fd00:ec2::254', family: 6 },
      ])) as unknown as ConstructorParameters<typeof AddressPolicy>[1];
    const url = new URL('https://hooks.corp.example/x');
    expect(await new AddressPolicy([], fakeDns).checkUrl(url)).toMatch(/^refused to deliver to hooks\.corp\.example \(10\.0\.0\.5\): it is a private address/);
    expect(await new AddressPolicy(['hooks.corp.example'], fakeDns).checkUrl(url)).toBeUndefined();
    // One permitted address is enough: the connection is made only to it.
    expect(await new AddressPolicy(['10.0.0.0/8'], fakeDns).checkUrl(url)).toBeUndefined();
    expect(await new AddressPolicy([]).checkUrl(new URL('http://localhost:1/'))).toMatch(
      /^refused to deliver to localhost \((127\.0\.0\.1|::1)\): it is a loopback address/,
    );
  });

  it('connects to the checked address with the Host header of the URL', async () => {
    let host = '';
    const server = createServer((q, r) => {
      host = q.headers.host ?? '';
      r.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const fakeDns = ((_h: string, _o: unknown, cb: (e: null, a: { address: string; family: number }[]) => void) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }])) as unknown as ConstructorParameters<typeof AddressPolicy>[1];
    const url = new URL(`http://hooks.internal:${port}/x`);
    const res = await send({ url, body: '{}', headers: {}, timeoutMs: 2000, policy: new AddressPolicy(['hooks.internal'], fakeDns), agent: newAgent(url, 1) });
    expect(res).toMatchObject({ ok: true, status: 200 });
    expect(host).toBe(`hooks.internal:${port}`);
    await new Promise<void>((r) => server.close(() => r()));
  });
});
