import { serverConfigIssues } from '../../../test/helpers/server-config.js';
import { describe, expect, it } from 'vitest';
import { parseYamlConfig } from './schema.js';
import { serverConfigSchema } from './server-config.js';

const issues = serverConfigIssues;

describe('server config: a value of the wrong type says the form meant', () => {
  it.each([
    ['a number where a path belongs', 'data_dir: 5\n', '1: data_dir: must be a string (quote it: data_dir: "5")'],
    // Quoting 8080 would not make an address: the message says what one looks like.
    ['a port alone', 'http_addr: 8080\n', '1: http_addr: must be a string (host:port, e.g. 0.0.0.0:8080)'],
    ['a quoted number', 'retention:\n  max_rows: "1000"\n', '2: retention.max_rows: must be a whole number, without quotes'],
    ['a block as a word', 'tls: on\n', '1: tls: must be a mapping with keys such as cert_file, key_file'],
    ['brokers as a word', 'kafka:\n  brokers: kafka-0:9092\n', '2: kafka.brokers: must be a list, e.g. brokers: ["kafka-0:9092"]'],
  ])('%s', (_name, yaml, issue) => {
    expect(issues(yaml)).toEqual([issue]);
  });
});

describe("server config: the GitLab KAS's keys", () => {
  const kas =
    "unknown key; known keys: data_dir, http_addr, grpc_addr, config_poll_interval, projects_dir, gitops_poll_interval, tls, kubernetes_api, webhooks, kafka, retention; a key of the GitLab KAS's server config, which Verdict does not read";
  it('name the key to write instead, for each KAS key the file has', () => {
    expect(
      issues(
        'agent:\n  listen:\n    address: 0.0.0.0:8150\n    certificate_file: /tls.crt\n  kubernetes_api:\n    listen:\n      address: 0.0.0.0:8154\nlisten_agent:\n  address: 0.0.0.0:8150\ngitlab:\n  address: https://gitlab.example.com\nredis:\n  server:\n    address: redis:6379\ngitaly:\n  client: {}\n',
      ),
    ).toEqual([
      `1: agent: ${kas}: instead of agent.listen.address, write grpc_addr (the agent API, e.g. grpc_addr: 0.0.0.0:8150); instead of agent.listen.certificate_file, write tls.cert_file (TLS on both listeners); instead of agent.kubernetes_api.listen.address, write kubernetes_api.listen`,
      `8: listen_agent: ${kas}: write grpc_addr instead (the agent API, e.g. grpc_addr: 0.0.0.0:8150), with tls for its certificate`,
      `10: gitlab: ${kas}: Verdict needs no GitLab; register agents with \`verdict agents register\`, each with a git repository as its configuration project`,
      `12: redis: ${kas}: replicas share state through the kafka block instead (docs/kafka.md)`,
      `15: gitaly: ${kas}: Verdict reads git repositories on the server's disk: each agent's configuration project, and manifest projects under projects_dir`,
    ]);
  });

  it('keep the did-you-mean of a misspelt Verdict key', () => {
    expect(issues('grpc_adr: 0.0.0.0:8150\n')).toEqual([
      '1: grpc_adr: unknown key; known keys: data_dir, http_addr, grpc_addr, config_poll_interval, projects_dir, gitops_poll_interval, tls, kubernetes_api, webhooks, kafka, retention (did you mean "grpc_addr"?)',
    ]);
  });
});

describe('server config: kubernetes_api.url_path_prefix', () => {
  const prefix = (yaml: string) =>
    parseYamlConfig(`kubernetes_api:\n  listen: 127.0.0.1:8154\n${yaml}`, 'server.yaml', serverConfigSchema).value.kubernetes_api?.url_path_prefix;

  it('takes a prefix without its trailing slash as the one with it', () => {
    expect(prefix('  url_path_prefix: /k8s-proxy\n')).toBe('/k8s-proxy/');
    expect(prefix('  url_path_prefix: /a/b/\n')).toBe('/a/b/');
    expect(prefix('')).toBe('/');
  });

  it('refuses a prefix that is no absolute path', () => {
    expect(issues('kubernetes_api:\n  listen: 127.0.0.1:8154\n  url_path_prefix: k8s-proxy/\n')).toEqual([
      '3: kubernetes_api.url_path_prefix: "k8s-proxy/" is not valid: a path starting with "/", e.g. /k8s-proxy/',
    ]);
  });
});

describe('server config: listen addresses', () => {
  it('refuses a port past 65535 at its line', () => {
    expect(issues('http_addr: 127.0.0.1:99999\ngrpc_addr: ":70000"\nkubernetes_api:\n  listen: 0.0.0.0:65536\n')).toEqual([
      '1: http_addr: port 99999 is over 65535: host:port, e.g. 0.0.0.0:8080',
      '2: grpc_addr: port 70000 is over 65535: host:port, e.g. 0.0.0.0:8150',
      '4: kubernetes_api.listen: port 65536 is over 65535: host:port, e.g. 0.0.0.0:8080',
    ]);
  });

  it('takes what the listeners take: IPv4-mapped v6, and an empty host for every interface', () => {
    const cfg = parseYamlConfig('http_addr: "[::ffff:127.0.0.1]:8080"\ngrpc_addr: ":8150"\n', 'server.yaml', serverConfigSchema).value;
    expect([cfg.http_addr, cfg.grpc_addr]).toEqual(['[::ffff:127.0.0.1]:8080', ':8150']);
  });
});

describe('server config: retention.max_age', () => {
  it('refuses days, as the original agent does, and says the hours to write', () => {
    expect(issues('retention:\n  max_age: 30d\n')).toEqual([
      '2: retention.max_age: must be a duration such as 500ms, 10s, 5m or 1h; days (d) are not a unit here: write 720h for 30d',
    ]);
  });
});
