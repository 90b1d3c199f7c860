import { describe, expect, it } from 'vitest';
import { splitHostPort } from './host-port.js';

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
