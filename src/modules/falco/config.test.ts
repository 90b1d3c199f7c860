import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../server/config/agent-config.js';
import { ConfigError } from '../../shared/config/schema.js';

const file = '.gitlab/agents/a/config.yaml';

function issues(text: string) {
  try {
    parseAgentConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('falco block', () => {
  it('fills defaults', () => {
    const { value } = parseAgentConfig('falco:\n  http: {}\n', file);
    expect(value.falco).toEqual({
      http: { listen: '0.0.0.0:2801', max_body_bytes: 1048576, tls: undefined },
      file: undefined,
      stdin: false,
      grpc: undefined,
      cluster_name: '',
      minimum_priority: 'Debug',
      rules: {},
      custom_fields: {},
      custom_tags: [],
      fingerprint_fields: undefined,
      dedup_window: 60_000,
      uuid_cache_size: 100_000,
    });
  });

  it('reads every option', () => {
    const { value } = parseAgentConfig(
      [
        'falco:',
        '  http:',
        '    listen: "[::]:2801"',
        '    max_body_bytes: 65536',
        '    tls: { cert_file: /tls/tls.crt, key_file: /tls/tls.key, client_ca_file: /tls/ca.crt }',
        '  file: { path: /var/log/falco/events.json, start_at: end, poll_interval: 1s }',
        '  stdin: true',
        '  grpc:',
        '    address: unix:///run/falco/falco.sock',
        '    reconnect: { initial_backoff: 2s, max_backoff: 1m }',
        '  cluster_name: prod',
        '  minimum_priority: info',
        '  rules:',
        '    "Terminal shell in container": { severity: high }',
        '    "Falco internal: syscall event drop": { ignore: true }',
        '  custom_fields: { env: prod, region: "%AWS_REGION" }',
        '  custom_tags: [prod]',
        '  fingerprint_fields: [rule, k8s.pod.name]',
        '  dedup_window: 5m',
        '',
      ].join('\n'),
      file,
    );
    const f = value.falco!;
    expect(f.http?.tls?.client_ca_file).toBe('/tls/ca.crt');
    expect(f.file).toEqual({ path: '/var/log/falco/events.json', start_at: 'end', poll_interval: 1000 });
    expect(f.grpc).toEqual({
      address: 'unix:///run/falco/falco.sock',
      ca_file: undefined,
      cert_file: undefined,
      key_file: undefined,
      poll_interval: 1000,
      reconnect: { initial_backoff: 2000, max_backoff: 60_000 },
    });
    expect(f.minimum_priority).toBe('Informational');
    expect(f.rules).toEqual({
      'Terminal shell in container': { ignore: false, severity: 'high' },
      'Falco internal: syscall event drop': { ignore: true, severity: undefined },
    });
    expect(f.custom_fields).toEqual({ env: 'prod', region: '%AWS_REGION' });
    expect(f.dedup_window).toBe(300_000);
  });

  it('reports mistakes with their line', () => {
    expect(issues('falco:\n  dedup_window: 5m\n')).toEqual([
      { file, path: 'falco', line: 2, message: expect.stringMatching(/^enable at least one input: http/) },
    ]);
    expect(issues('falco:\n  http:\n    listen: 2801\n')[0]).toMatchObject({ path: 'falco.http.listen', line: 3 });
    // What the listener would refuse is refused at its line, with the form meant.
    expect(issues('falco:\n  http:\n    listen: "0.0.0.0:99999"\n')).toEqual([
      {
        file,
        path: 'falco.http.listen',
        line: 3,
        message: 'port 99999 is over 65535: host:port, e.g. 0.0.0.0:2801 (the port Falcosidekick uses) or [::]:2801',
      },
    ]);
    expect(issues('falco:\n  http:\n    listen: localhost\n')[0]?.message).toBe(
      '"localhost" is not valid: host:port, e.g. 0.0.0.0:2801 (the port Falcosidekick uses) or [::]:2801',
    );
    // Falco's gRPC address: a unix socket, or host:port checked as for the http listener, with a host to connect to.
    const grpcHint = 'unix:///run/falco/falco.sock or host:port, e.g. falco-grpc.falco.svc:5060';
    for (const [address, message] of [
      ['falco:99999', 'port 99999 is over 65535'],
      ['":5060"', '":5060" names no host to connect to'],
      ['falco', '"falco" is not valid'],
      ['"unix:"', '"unix:" is not valid'],
    ]) {
      expect(issues(`falco:\n  grpc:\n    address: ${address}\n`)).toEqual([{ file, path: 'falco.grpc.address', line: 3, message: `${message}: ${grpcHint}` }]);
    }
    for (const address of ['unix:///run/falco/falco.sock', '"[fd00::1]:5060"', 'falco-grpc.falco.svc:5060'])
      expect(parseAgentConfig(`falco:\n  grpc:\n    address: ${address}\n`, file).value.falco?.grpc?.address).toBe(address.replace(/"/g, ''));
    expect(issues('falco:\n  stdin: true\n  minimum_priority: loud\n')[0]).toMatchObject({
      path: 'falco.minimum_priority',
      line: 3,
      message: expect.stringMatching(/Falco priority/),
    });
    expect(issues('falco:\n  stdin: true\n  rules:\n    "R": { severity: urgent }\n')[0]).toMatchObject({ path: 'falco.rules["R"].severity', line: 4 });
    expect(issues('falco:\n  stdin: true\n  rules:\n    "R": { ignroe: true }\n')[0]).toMatchObject({
      path: 'falco.rules["R"].ignroe',
      line: 4,
      message: expect.stringMatching(/unknown key/),
    });
    expect(issues('falco:\n  grpc:\n    address: falco:5060\n    cert_file: /c.crt\n')[0]).toMatchObject({
      path: 'falco.grpc',
      line: 3,
      message: expect.stringMatching(/both cert_file and key_file/),
    });
    expect(issues('falco:\n  http:\n    tls: { cert_file: /c.crt }\n')[0]).toMatchObject({ path: 'falco.http.tls.key_file', message: 'is required' });
    // labels.tags holds the event's tags: a custom field of that name would be lost without a word.
    expect(issues('falco:\n  stdin: true\n  custom_fields: { env: prod, tags: team-a }\n')[0]).toMatchObject({
      path: 'falco.custom_fields',
      line: 3,
      message: expect.stringContaining('tags is taken by the label holding the event'),
    });
  });

  it('says max_body_bytes is a number of bytes, with an example and the cap in MiB', () => {
    for (const v of ['64MiB', '"8388608"', '67108865', '100']) {
      const [issue] = issues(`falco:\n  http:\n    max_body_bytes: ${v}\n`);
      expect(issue!.message).toMatch(/must be a number of bytes from 1024 to 67108864 \(64 MiB\), e\.g\. 8388608 for 8 MiB/);
    }
    expect(issues('falco:\n  http:\n    max_body_bytes: "8388608"\n')[0]!.message).toMatch(/without quotes/);
  });
});
