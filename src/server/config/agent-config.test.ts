import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from './agent-config.js';
import { ConfigError } from '../../shared/config/schema.js';

const file = '.gitlab/agents/a/config.yaml';

describe('parseAgentConfig', () => {
  it('accepts a cilium block and fills defaults', () => {
    const { value, warnings } = parseAgentConfig('cilium:\n  hubble_relay_address: hubble-relay.kube-system.svc:80\n', file);
    expect(value.cilium?.hubble_relay_address).toBe('hubble-relay.kube-system.svc:80');
    expect(value.cilium?.reconnect).toEqual({ initial_backoff: 10_000, max_backoff: 300_000 });
    expect(value.cilium?.policies).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('reports a missing required key with path and line', () => {
    try {
      parseAgentConfig('observability:\n  logging:\n    level: info\ncilium:\n  policies: []\n', file);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as ConfigError).issues).toEqual([{ file, path: 'cilium.hubble_relay_address', line: 5, message: 'is required' }]);
    }
  });

  it('reports a bad value with its line', () => {
    expect(() => parseAgentConfig('cilium:\n  hubble_relay_address: "not an address"\n', file)).toThrow(
      /config.yaml:2: cilium.hubble_relay_address: "not an address" is not valid/,
    );
  });

  it('reports invalid YAML with a line', () => {
    expect(() => parseAgentConfig('cilium:\n  hubble_relay_address: [a\n', file)).toThrow(/config.yaml:\d+: \(document\): invalid YAML/);
  });

  it('warns about unknown sections and keeps going', () => {
    const { value, warnings } = parseAgentConfig('remote_development:\n  enabled: true\n', file);
    expect(value.cilium).toBeUndefined();
    expect(warnings).toEqual([{ file, path: 'remote_development', line: 1, message: 'unknown section, ignored' }]);
  });

  it('rejects an unknown key inside a known block', () => {
    expect(() => parseAgentConfig('cilium:\n  hubble_relay_address: r:80\n  hubble_relay_adress: x\n', file)).toThrow(
      /config.yaml:3: cilium.hubble_relay_adress: unknown key; known keys: hubble_relay_address/,
    );
  });

  it('accepts an empty file', () => {
    expect(parseAgentConfig('', file).value).toEqual({});
  });
});
