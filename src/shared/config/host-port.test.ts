import { describe, expect, it } from 'vitest';
import { hostPort, hostPortProblem, splitHostPort } from './host-port.js';
import { configIssues } from '../../../test/helpers/server-config.js';
import { field, obj } from './schema.js';

describe('splitHostPort', () => {
  it('splits host:port and [v6]:port; an empty host listens everywhere', () => {
    expect(splitHostPort('relay.kube-system:80')).toEqual({ host: 'relay.kube-system', port: 80 });
    expect(splitHostPort('[::1]:8150')).toEqual({ host: '::1', port: 8150 });
    expect(splitHostPort(':8080')).toEqual({ host: '0.0.0.0', port: 8080 });
    expect(splitHostPort('[::ffff:10.0.0.1]:2801')).toEqual({ host: '::ffff:10.0.0.1', port: 2801 });
  });

  it('refuses what is not host:port, and a port past 65535 (five digits pass the pattern)', () => {
    expect(() => splitHostPort('relay')).toThrow('"relay" is not host:port');
    expect(() => splitHostPort('relay:70000')).toThrow('port 70000 is over 65535');
    expect(splitHostPort('relay:65535').port).toBe(65535);
    expect(() => splitHostPort('[relay]:80')).toThrow('"[relay]:80" is not host:port');
  });
});

describe('hostPortProblem', () => {
  const hint = 'host:port, e.g. relay:80';

  it('refuses brackets that hold no IPv6 address, and says a zone is not supported', () => {
    expect(hostPortProblem('[...]:80', hint)).toBe('"[...]" is not an IPv6 address: host:port, e.g. relay:80');
    expect(hostPortProblem('[:]:80', hint)).toBe('"[:]" is not an IPv6 address: host:port, e.g. relay:80');
    expect(hostPortProblem('[fe80::1%eth0]:80', hint)).toBe(
      '"[fe80::1%eth0]:80" is not host:port: an IPv6 zone (%...) is not supported, give the address without it: host:port, e.g. relay:80',
    );
    expect(hostPortProblem('[fe80::1]:80', hint)).toBeUndefined();
  });

  it('takes port 0 for a listener only', () => {
    expect(hostPortProblem('127.0.0.1:0', hint)).toBeUndefined();
    expect(hostPortProblem('relay:0', hint, { dial: true })).toBe(
      'port 0 picks a free port only for a listener; give the port to connect to: host:port, e.g. relay:80',
    );
    expect(hostPortProblem(':80', hint, { dial: true })).toBe('":80" names no host to connect to: host:port, e.g. relay:80');
  });
});

describe('hostPort', () => {
  const schema = obj({ addr: field(hostPort('host:port, e.g. relay:80')) });
  const errorsOf = (yaml: string) => configIssues(yaml, schema);

  it('says at its line what is wrong with an address, as for a flag', () => {
    expect(errorsOf('addr: fd00::1:8080\n')).toEqual([
      '1: addr: "fd00::1:8080" is not host:port: write an IPv6 address in brackets, [fd00::1]:8080: host:port, e.g. relay:80',
    ]);
    expect(errorsOf('addr: "[fe80::1%eth0]:80"\n')).toEqual([
      '1: addr: "[fe80::1%eth0]:80" is not host:port: an IPv6 zone (%...) is not supported, give the address without it: host:port, e.g. relay:80',
    ]);
    expect(errorsOf('addr: relay\n')).toEqual(['1: addr: "relay" is not valid: host:port, e.g. relay:80']);
    expect(errorsOf('addr: 8080\n')).toEqual(['1: addr: must be a string (host:port, e.g. relay:80)']);
    expect(errorsOf('addr: "[fd00::1]:8080"\n')).toEqual([]);
  });
});
