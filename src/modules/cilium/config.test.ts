import { describe, expect, it } from 'vitest';
import { parseYamlConfig } from '../../shared/config/schema.js';
import { ciliumBlock } from './config.js';

describe('cilium block', () => {
  const parse = (address: string) => parseYamlConfig(`hubble_relay_address: ${address}\n`, 'config.yaml', ciliumBlock);
  const hint = "Hubble Relay's gRPC host:port, usually port 80 of the hubble-relay Service, e.g. hubble-relay.kube-system.svc.cluster.local:80";

  it('takes host:port and [IPv6]:port up to port 65535', () => {
    expect(parse('hubble-relay.kube-system.svc:65535').value.hubble_relay_address).toBe('hubble-relay.kube-system.svc:65535');
    expect(parse('"[fd00::1]:80"').value.hubble_relay_address).toBe('[fd00::1]:80');
    expect(parse('"[::ffff:10.0.0.1]:80"').value.hubble_relay_address).toBe('[::ffff:10.0.0.1]:80');
  });

  it("refuses what Relay's dial would, at its line, saying what to write", () => {
    for (const [address, why] of [
      ['hubble-relay:80800', 'port 80800 is over 65535'],
      ['"[fd00::1]:99999"', 'port 99999 is over 65535'],
      ['hubble-relay', '"hubble-relay" is not valid'],
      // An empty host is every interface to a listener, and nothing to connect to.
      ['":80"', '":80" names no host to connect to'],
      ['"[relay]:80"', '"[relay]:80" is not valid'],
    ]) {
      expect(() => parse(address!)).toThrow(`config.yaml:1: hubble_relay_address: ${why}: ${hint}`);
    }
    expect(() => parse('80')).toThrow(`config.yaml:1: hubble_relay_address: must be a string (${hint})`);
  });

  it('alert_namespaces must be namespace names', () => {
    const cfg = (ns: string) => parseYamlConfig(`hubble_relay_address: relay:80\nalert_namespaces: [${ns}]\n`, 'config.yaml', ciliumBlock);
    expect(cfg('shop, db-1').value.alert_namespaces).toEqual(['shop', 'db-1']);
    expect(() => cfg('"Book Info"')).toThrow(
      'config.yaml:2: alert_namespaces[0]: "Book Info" is not a namespace name (lowercase letters, digits and "-", starting and ending with a letter or digit, at most 63 characters)',
    );
  });
});
