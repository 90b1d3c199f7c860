import { describe, expect, it } from 'vitest';
import { parseYamlConfig } from '../../shared/config/schema.js';
import { ciliumBlock } from './config.js';

describe('cilium block', () => {
  const parse = (address: string) => parseYamlConfig(`hubble_relay_address: "${address}"\n`, 'config.yaml', ciliumBlock);

  it('takes host:port and [IPv6]:port up to port 65535', () => {
    expect(parse('hubble-relay.kube-system.svc:65535').value.hubble_relay_address).toBe('hubble-relay.kube-system.svc:65535');
    expect(parse('[fd00::1]:80').value.hubble_relay_address).toBe('[fd00::1]:80');
  });

  it('refuses a port over 65535, saying what to write', () => {
    expect(() => parse('hubble-relay:80800')).toThrow(
      /hubble_relay_address: port 80800 is over 65535: write Relay's gRPC port .* e\.g\. hubble-relay\.kube-system\.svc\.cluster\.local:80/,
    );
    expect(() => parse('[fd00::1]:99999')).toThrow(/port 99999 is over 65535/);
  });
});
