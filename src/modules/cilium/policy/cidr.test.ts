import { describe, expect, it } from 'vitest';
import { cidrContains, cidrRuleMatches, parseCidr, parseIp } from './cidr.js';

describe('addresses', () => {
  it.each([
    ['10.1.2.3', false, 0x0a010203n],
    ['::1', true, 1n],
    ['2001:db8::', true, 0x20010db8n << 96n],
    ['2001:db8:0:0:0:0:0:5', true, (0x20010db8n << 96n) | 5n],
    ['fe80::1%eth0', true, (0xfe80n << 112n) | 1n],
    ['::ffff:192.0.2.1', false, 0xc0000201n],
    ['64:ff9b::192.0.2.1', true, (0x64ff9bn << 96n) | 0xc0000201n],
  ])('%s', (text, v6, n) => {
    const ip = parseIp(text)!;
    expect(ip.v6).toBe(v6);
    expect(BigInt(ip.n)).toBe(n);
  });

  it.each(['10.1.2', '10.1.2.256', '1::2::3', '2001:db8::g', '', 'x', '1:2:3:4:5:6:7:8:9'])('rejects %j', (t) => {
    expect(parseIp(t)).toBeNull();
  });
});

describe('prefixes', () => {
  const has = (c: string, ip: string) => cidrContains(parseCidr(c)!, parseIp(ip)!);
  it('IPv4', () => {
    expect(has('10.0.0.0/8', '10.255.0.1')).toBe(true);
    expect(has('10.0.0.0/8', '11.0.0.1')).toBe(false);
    expect(has('0.0.0.0/0', '8.8.8.8')).toBe(true);
    expect(has('192.0.2.7', '192.0.2.7')).toBe(true);
    expect(has('192.0.2.7/24', '192.0.2.200')).toBe(true);
    expect(has('169.254.169.254/32', '169.254.169.253')).toBe(false);
  });
  it('IPv6 and families', () => {
    expect(has('2001:db8::/32', '2001:db8:ffff::1')).toBe(true);
    expect(has('2001:db8::/32', '2001:db9::1')).toBe(false);
    expect(has('::/0', '2001:db8::1')).toBe(true);
    expect(has('::/0', '10.0.0.1')).toBe(false);
    expect(has('0.0.0.0/0', '::1')).toBe(false);
    expect(has('::ffff:10.0.0.0/104', '10.1.1.1')).toBe(true);
  });
  it('except', () => {
    const r = { cidr: parseCidr('10.0.0.0/8')!, except: [parseCidr('10.96.0.0/12')!] };
    expect(cidrRuleMatches(r, parseIp('10.95.255.255')!)).toBe(true);
    expect(cidrRuleMatches(r, parseIp('10.96.0.1')!)).toBe(false);
    expect(cidrRuleMatches(r, parseIp('10.111.255.255')!)).toBe(false);
    expect(cidrRuleMatches(r, parseIp('10.112.0.0')!)).toBe(true);
  });
  it.each(['10.0.0.0/33', '::/129', '10.0.0.0/x', 'a/8'])('rejects %j', (t) => {
    expect(parseCidr(t)).toBeNull();
  });
});
