import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverConfigIssues } from '../../../test/helpers/server-config.js';
import { afterEach, describe, expect, it } from 'vitest';
import { type ConfigError, field, list, obj, parseYamlConfig, type Validator } from './schema.js';
import { serverConfigSchema } from './server-config.js';
import { DEFAULT_RETRY_SCHEDULE_MS, formatDuration, integrationToJson, parseIntegrationJson, webhooksConfigSchema } from './webhooks-config.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

function parse(yaml: string) {
  return parseYamlConfig(yaml, 'server.yaml', serverConfigSchema).value;
}

const issues = serverConfigIssues;

describe('webhooks config block', () => {
  afterEach(() => {
    delete process.env.VERDICT_TEST_WHSEC;
  });

  it('points a duplicate name at the line of the second name, not where the list starts', () => {
    expect(
      issues(`data_dir: /tmp/x
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: a
      type: generic
      url: http://127.0.0.1:9/a
      secrets: [${SECRET}]
    - name: a
      type: generic
      url: http://127.0.0.1:9/b
      secrets: [${SECRET}]
`),
    ).toEqual(['9: webhooks.integrations[1].name: "a" is used by an earlier integration; names must be unique']);
  });

  it('parses a full block with defaults filled in', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-whcfg-'));
    writeFileSync(join(dir, 'key'), 'glpat-key\n');
    process.env.VERDICT_TEST_WHSEC = SECRET;
    const cfg = parse(`data_dir: /tmp/x
webhooks:
  allow_private_addresses: [127.0.0.1, 10.0.0.0/8, hooks.internal]
  external_url: https://verdict.example.com
  integrations:
    - name: sec-team
      type: generic
      url: https://hooks.example.com/verdict
      secrets: [env:VERDICT_TEST_WHSEC, ${SECRET}]
      route:
        min_severity: high
        sources: [cilium]
        namespaces: [shop, "db-*"]
        policies: [shop/payments-ingress]
        agents: [prod]
      group_window: 30s
      headers: {X-Team: security}
      timeout: 3s
      retry_schedule: [1s, 10s]
      concurrency: 8
      repeat_milestones: [10, 100]
    - name: gitlab
      type: gitlab
      url: https://gitlab.example.com/g/p/alerts/notify/verdict/abc.json
      key: file:${join(dir, 'key')}
`);
    const [g, gl] = cfg.webhooks!.integrations;
    expect(cfg.webhooks!.allow_private_addresses).toEqual(['127.0.0.1', '10.0.0.0/8', 'hooks.internal']);
    expect(g).toMatchObject({
      name: 'sec-team',
      type: 'generic',
      enabled: true,
      secrets: ['env:VERDICT_TEST_WHSEC', SECRET],
      group_window: 30_000,
      headers: { 'X-Team': 'security' },
      timeout: 3000,
      retry_schedule: [1000, 10_000],
      concurrency: 8,
      repeat_milestones: [10, 100],
      route: { min_severity: 'high', sources: ['cilium'], namespaces: ['shop', 'db-*'], policies: ['shop/payments-ingress'], rules: [], agents: ['prod'] },
    });
    // The reference keeps the secret out of the stored spec.
    expect(gl!.key).toBe(`file:${join(dir, 'key')}`);
    expect(gl).toMatchObject({ timeout: 15_000, retry_schedule: DEFAULT_RETRY_SCHEDULE_MS, concurrency: 4, route: { min_severity: 'info' } });
  });

  it('takes the URL from env: or file: too, and checks what it holds', () => {
    process.env.VERDICT_TEST_WHSEC = 'https://hooks.slack.com/services/T/B/X';
    expect(parse('webhooks:\n  integrations:\n    - {name: s, type: slack, url: "env:VERDICT_TEST_WHSEC"}\n').webhooks!.integrations[0]!.url).toBe(
      'env:VERDICT_TEST_WHSEC',
    );
    process.env.VERDICT_TEST_WHSEC = 'not a url';
    expect(issues('webhooks:\n  integrations:\n    - {name: s, type: slack, url: "env:VERDICT_TEST_WHSEC"}\n')).toEqual([
      expect.stringMatching(/^3: webhooks\.integrations\[0\]\.url: the URL in env:VERDICT_TEST_WHSEC is not a URL/),
    ]);
  });

  it('has no webhooks without the block', () => {
    expect(parse('data_dir: /tmp/x\n').webhooks).toBeUndefined();
  });

  it('reports each problem with its line and what to do', () => {
    const got = issues(`webhooks:
  allow_private_addresses: [not a host!]
  integrations:
    - name: a
      type: generic
      url: ftp://example.com/
    - name: b
      type: gitlab
      url: https://gitlab.example.com/x
    - name: c
      type: generic
      url: https://example.com/
      secrets: [env:VERDICT_TEST_WHSEC]
    - name: d
      type: slack
      url: https://hooks.slack.com/services/T/B/X
      key: abc
    - name: e
      type: generic
      url: https://example.com/
      secrets: [whsec_c2hvcnQ=]
      headers: {Authorization: x}
      route: {min_severity: urgent}
`);
    expect(got).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^2: webhooks\.allow_private_addresses\[0\]: .*neither an IP address/),
        expect.stringMatching(/^6: webhooks\.integrations\[0\]\.url: scheme "ftp" is not supported/),
        expect.stringMatching(/^7: webhooks\.integrations\[1\]\.key: .*needs its authorization key/),
        expect.stringMatching(/^13: webhooks\.integrations\[2\]\.secrets\[0\]: environment variable VERDICT_TEST_WHSEC is not set; export it/),
        expect.stringMatching(/^17: webhooks\.integrations\[3\]\.key: a Slack incoming webhook takes no key/),
        expect.stringMatching(/^21: webhooks\.integrations\[4\]\.secrets\[0\]: decodes to 5 bytes; use 24 to 64/),
        expect.stringMatching(/^22: webhooks\.integrations\[4\]\.headers: "Authorization" is set by Verdict/),
        expect.stringMatching(/^23: webhooks\.integrations\[4\]\.route\.min_severity: must be one of "critical"/),
      ]),
    );
    // The generic webhook without secrets is reported too (its secrets are the problem).
    expect(got.some((l) => l.includes('integrations[0]'))).toBe(true);
  });

  it('shows a list of what its items are when something else is given instead', () => {
    // A value that is one item is put in brackets; one that is not gets the key's own example.
    expect(issues('webhooks:\n  allow_private_addresses: true\n')).toEqual([
      '2: webhooks.allow_private_addresses: must be a list, e.g. allow_private_addresses: [10.0.0.0/8, 127.0.0.1]',
    ]);
    expect(issues('webhooks:\n  allow_private_addresses: hooks.internal\n')).toEqual([
      '2: webhooks.allow_private_addresses: must be a list, e.g. allow_private_addresses: [hooks.internal]',
    ]);
    expect(
      issues(`webhooks:
  integrations:
    - name: a
      type: generic
      url: https://hooks.example.com/
      secrets: [${SECRET}]
      retry_schedule: 5
      route: {sources: cilum, namespaces: 5}
`),
    ).toEqual([
      '7: webhooks.integrations[0].retry_schedule: must be a list, e.g. retry_schedule: [5s, 5m, 30m]',
      '8: webhooks.integrations[0].route.sources: must be a list, e.g. sources: [cilium, falco, gitops]',
      '8: webhooks.integrations[0].route.namespaces: must be a list, e.g. namespaces: ["5"]',
    ]);
    // Without an example, a word that cannot be an item is told what an item is.
    expect(issues('webhooks:\n  integrations: sec-team\n')).toEqual([
      '2: webhooks.integrations: must be a list; each item must be a mapping with keys such as name, type, url, enabled, secrets, …',
    ]);
  });

  it('refuses duplicate names, three secrets and group_window for GitLab', () => {
    const got = issues(`webhooks:
  integrations:
    - {name: a, type: generic, url: "https://x.example/", secrets: [${SECRET}, ${SECRET}, ${SECRET}]}
    - {name: a, type: gitlab, url: "https://x.example/", key: k, group_window: 1m}
`);
    expect(got.join('\n')).toMatch(/secrets: at most 2 secrets/);
    expect(got.join('\n')).toMatch(/group_window: GitLab's HTTP integration takes one alert per request/);
    // The second item failed on its own, so the duplicate name is not reported twice over.
    expect(
      issues(`webhooks:
  integrations:
    - {name: a, type: slack, url: "https://hooks.slack.com/services/x"}
    - {name: a, type: slack, url: "https://hooks.slack.com/services/y"}
`),
    ).toEqual([expect.stringMatching(/integrations\[1\]\.name: "a" is used by an earlier integration/)]);
  });

  it('takes an admin API body with the same validators, and round-trips it', () => {
    const spec = parseIntegrationJson({
      name: 'am',
      type: 'alertmanager',
      url: 'https://am.example/hook',
      timeout: '5s',
      retry_schedule: ['100ms', '2m'],
      group_window: '1h',
    });
    expect(spec).toMatchObject({ timeout: 5000, retry_schedule: [100, 120_000], group_window: 3_600_000 });
    expect(parseIntegrationJson(integrationToJson(spec))).toEqual(spec);
    expect(() => parseIntegrationJson({ name: 'x', type: 'pagerduty', url: 'https://a/' })).toThrow(
      /^request body: type: must be one of "generic", "gitlab", "alertmanager", "slack"/,
    );
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(250)).toBe('250ms');
  });

  it('names the field of a JSON body without line numbers, which a one-line body does not have', () => {
    const issuesOf = (body: unknown) => {
      try {
        parseIntegrationJson(body);
      } catch (e) {
        return { message: (e as Error).message, issues: (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`) };
      }
      throw new Error('parsed');
    };
    const bad = issuesOf({ name: 'x', type: 'alertmanager', url: 'https://a.example/', route: { min_severity: 'urgent' }, timeout: 'soon' });
    expect(bad.message).toMatch(/^request body: route\.min_severity: must be one of .*; request body: timeout: must be a duration/);
    expect(bad.message).not.toMatch(/request body:\d/);
    // Rules across fields are at the field too, with no leading dot at the top of the body.
    expect(issuesOf({ name: 'x', type: 'generic', url: 'https://a.example/' }).issues).toEqual([
      'secrets: a generic webhook is signed: give one secret (two while rotating), e.g. secrets: [whsec_…]',
    ]);
    expect(issuesOf({ name: 'x', type: 'generic', url: 'https://a.example/', secrets: ['nope'] }).issues).toEqual([
      expect.stringMatching(/^secrets\[0\]: must be "whsec_"/),
    ]);
  });

  it('accepts the webhooks schema alone', () => {
    expect(parseYamlConfig('integrations: []\n', 'w.yaml', webhooksConfigSchema).value).toEqual({ allow_private_addresses: [], integrations: [] });
  });
});

describe('secrets in messages', () => {
  const generic = (line: string) =>
    `webhooks:\n  integrations:\n    - name: a\n      type: generic\n      url: https://hooks.example.com/x\n      secrets: [${SECRET}]\n${line}`;

  it.each([
    ['a webhook secret given as a scalar', generic('').replace(`[${SECRET}]`, SECRET), SECRET],
    ['a webhook key given as a number', generic('      key: 987654321\n'), '987654321'],
    ['a webhook key that is an undefined alias', generic('      key: *s3cretkey\n'), 's3cretkey'],
    ['a Slack URL given as a number', 'webhooks:\n  integrations:\n    - name: s\n      type: slack\n      url: 1234567\n', '1234567'],
    [
      'a SASL password given as a number',
      'kafka:\n  brokers: [k:9092]\n  sasl:\n    mechanism: plain\n    username: u\n    password: 123456789\n',
      '123456789',
    ],
  ])('%s is not echoed', (_name, yaml, secret) => {
    const found = issues(yaml);
    expect(found.length).toBeGreaterThan(0);
    for (const m of found) expect(m).not.toContain(secret);
  });

  it('a list of secrets given one shows its example', () => {
    expect(issues(generic('').replace(`[${SECRET}]`, SECRET))).toEqual([
      '6: webhooks.integrations[0].secrets: must be a list, e.g. secrets: [env:VERDICT_WEBHOOK_SECRET]',
    ]);
  });

  it('a list of secrets given one never checks it as an item (which would read file: paths)', () => {
    let calls = 0;
    const secretItem: Validator<string> = () => {
      calls++;
      return 'x';
    };
    secretItem.sensitive = true;
    expect(() => parseYamlConfig('s: file:/etc/verdict/secret\n', 'x.yaml', obj({ s: field(list(secretItem)) }))).toThrow(
      'x.yaml:1: s: must be a list of secrets, e.g. [env:VAR] or [file:/path]',
    );
    expect(calls).toBe(0);
  });
});

describe('env: and file: references', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-whref-'));
  // A file whose first line reads as a URL scheme, as /etc/passwd's "root:x:0:0" does.
  const hostFile = join(dir, 'passwd');
  writeFileSync(hostFile, 'root:x:0:0:root:/root:/bin/bash\n');
  afterEach(() => {
    delete process.env.VERDICT_TEST_WHSEC;
  });

  const apiIssues = (body: Record<string, unknown>) => {
    try {
      parseIntegrationJson({ name: 'x', type: 'alertmanager', url: 'https://a.example/', ...body });
    } catch (e) {
      return (e as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    }
    return [];
  };

  it.each([
    ['url', { url: `file:${hostFile}` }, 'URL'],
    ['url from the environment', { url: 'env:PATH' }, 'URL'],
    ['a missing file', { url: 'file:/nonexistent/verdict' }, 'URL'],
    ['secrets', { secrets: ['env:HOME'] }, 'secret (whsec_…)'],
    ['key', { key: `file:${hostFile}` }, 'key'],
  ])('an admin API body may not read the server host: %s', (_name, body, what) => {
    const found = apiIssues(body);
    const path = Object.keys(body)[0] === 'secrets' ? 'secrets[0]' : Object.keys(body)[0];
    expect(found).toEqual([
      `${path}: env: and file: references read the server's own environment and files, so only the server config file may use them; send the ${what} itself`,
    ]);
    // Nothing read is echoed, and a missing file answers as an existing one does.
    for (const m of found) expect(m).not.toMatch(/root|ENOENT|no such file|\/usr\/bin/);
  });

  it('the config file reads them, and never quotes what it read', () => {
    process.env.VERDICT_TEST_WHSEC = SECRET;
    const cfg = parse(`webhooks:
  integrations:
    - {name: a, type: generic, url: "https://hooks.example.com/x", secrets: [env:VERDICT_TEST_WHSEC]}
`);
    expect(cfg.webhooks!.integrations[0]!.secrets).toEqual(['env:VERDICT_TEST_WHSEC']);
    expect(issues(`webhooks:\n  integrations:\n    - {name: a, type: alertmanager, url: "file:${hostFile}"}\n`)).toEqual([
      `3: webhooks.integrations[0].url: the URL in file:${hostFile} has a scheme that is not supported; use https:// (or http:// inside a trusted network)`,
    ]);
  });
});

describe('webhooks config: an endpoint on a private address known without DNS', () => {
  afterEach(() => {
    delete process.env.VERDICT_TEST_SLACK_URL;
  });
  const hook = (url: string, allow = '') =>
    `webhooks:\n${allow ? `  allow_private_addresses: [${allow}]\n` : ''}  integrations:\n    - name: a\n      type: generic\n      url: ${url}\n      secrets: [${SECRET}]\n`;
  const advice = (shown: string, ip: string, why: string) =>
    `5: webhooks.integrations[0].url: refused to deliver to ${shown}: it is a ${why} address, which webhook endpoints may not reach unless the operator allows it; if this endpoint is yours, add "${ip}" (or its network, or the host name) to webhooks.allow_private_addresses in the server config`;

  it('is refused at load, at the URL, with what to allow: a literal IP or localhost', () => {
    expect(issues(hook('http://127.0.0.1:9000/hook'))).toEqual([advice('127.0.0.1', '127.0.0.1', 'loopback')]);
    expect(issues(hook('http://[::1]:9000/hook'))).toEqual([advice('::1', '::1', 'loopback')]);
    expect(issues(hook('http://10.0.0.5/hook'))).toEqual([advice('10.0.0.5', '10.0.0.5', 'private')]);
    expect(issues(hook('http://localhost:9000/hook'))).toEqual([advice('localhost (127.0.0.1)', '127.0.0.1', 'loopback')]);
    expect(issues(hook('http://LocalHost.:9000/hook'))).toEqual([advice('localhost (127.0.0.1)', '127.0.0.1', 'loopback')]);
  });

  it('is accepted when allow_private_addresses names it (address, network or name); a name that resolves later is checked when delivering', () => {
    expect(issues(hook('http://127.0.0.1:9000/hook', '127.0.0.1'))).toEqual([]);
    expect(issues(hook('http://10.0.0.5/hook', '10.0.0.0/8'))).toEqual([]);
    expect(issues(hook('http://localhost:9000/hook', 'localhost'))).toEqual([]);
    expect(issues(hook('http://hooks.internal/hook'))).toEqual([]);
    expect(issues(hook('https://203.0.113.7/hook'))).toEqual([]);
  });

  it('names the reference, not the URL, for a URL read from env: (a Slack URL is a secret)', () => {
    process.env.VERDICT_TEST_SLACK_URL = 'http://169.254.169.254/services/T0/B0/secret';
    expect(issues('webhooks:\n  integrations:\n    - name: s\n      type: slack\n      url: env:VERDICT_TEST_SLACK_URL\n')).toEqual([
      expect.stringMatching(
        /^5: webhooks\.integrations\[0\]\.url: the URL in env:VERDICT_TEST_SLACK_URL: refused to deliver to 169\.254\.169\.254: it is a link-local .*allow_private_addresses/,
      ),
    ]);
    expect(issues('webhooks:\n  integrations:\n    - name: s\n      type: slack\n      url: env:VERDICT_TEST_SLACK_URL\n').join()).not.toContain('secret');
  });
});
