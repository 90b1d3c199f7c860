import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from './agent-config.js';
import { ConfigError, formatIssue } from '../../shared/config/schema.js';

const file = '.gitlab/agents/a/config.yaml';
const testdata = (name: string) => readFileSync(join(import.meta.dirname, 'testdata', name), 'utf8');
const warningsOf = (text: string) => parseAgentConfig(text, file).warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`);
const errorsOf = (text: string): string[] => {
  try {
    parseAgentConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.issues.map((i) => `${i.line}: ${i.path}: ${i.message}`);
    throw e;
  }
  throw new Error('expected the configuration to be refused');
};
const notUsed = (line: number, path: string, why: string) => `${line}: ${path}: not used by Verdict (${why}); accepted and ignored`;
const FILTERS = 'the GitLab agent dropped resource filters in 14.0; every object of the manifests is applied';
const CHARTS = 'Helm charts are not part of this release; render them into manifests';

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
    const { value, warnings } = parseAgentConfig('agent_upgrades:\n  channel: stable\n', file);
    expect(value.cilium).toBeUndefined();
    expect(warnings.map(formatIssue)).toEqual([`${file}:1: agent_upgrades: unknown section, ignored: no version of the GitLab agent or of Verdict has it`]);
  });

  it('rejects an unknown key inside a block only Verdict defines, suggesting the key meant', () => {
    expect(() => parseAgentConfig('cilium:\n  hubble_relay_address: r:80\n  hubble_relay_adress: x\n', file)).toThrow(
      /config.yaml:3: cilium.hubble_relay_adress: unknown key; known keys: hubble_relay_address, .* \(did you mean "hubble_relay_address"\?\)/,
    );
  });

  it('says to quote a value that YAML read as an alias (it starts with "*"), in any block', () => {
    expect(errorsOf('ci_access:\n  projects:\n    - id: shop/app\n      environments: [*-staging]\n')).toEqual([
      '4: ci_access.projects[0].environments[0]: is a YAML alias (*-staging) naming no anchor: a value starting with "*" must be quoted, "*-staging"',
    ]);
  });

  it('warns about a block with nothing under it, which YAML makes null and turns nothing on', () => {
    expect(warningsOf('falco:\ncilium:\n  hubble_relay_address: relay:80\n')).toEqual([
      '1: falco: has no value, so it is taken as not there (a module block turns nothing on); write its settings under it, or remove the line',
    ]);
    expect(parseAgentConfig('falco:\n', file).value.falco).toBeUndefined();
    // Inside a block it is a key like any other; a key with a default takes it; inside a section Verdict ignores, nothing more is said.
    expect(warningsOf('falco:\n  http:\n    tls:\n  dedup_window:\n')).toEqual([
      '3: falco.http.tls: has no value, so it is as if it were not written; give it a value or remove the line',
    ]);
    expect(warningsOf('remote_development:\n  gitlab_workspaces_proxy:\n').filter((w) => w.includes('has no value'))).toEqual([]);
  });

  it('accepts an empty file', () => {
    expect(parseAgentConfig('', file).value).toEqual({});
  });

  it('refuses a file over 128 KiB as a configuration error naming the file', () => {
    expect(() => parseAgentConfig(`# ${'x'.repeat(128 * 1024)}\n`, file)).toThrow(ConfigError);
  });
});

// Files of every era of the GitLab agent, as found in public configuration
// projects: each must validate, with one warning per key Verdict does not use.
describe('real config.yaml files of the GitLab agent', () => {
  it('13.x: GitOps with resource filters, the cilium_alert block', () => {
    const { value, warnings } = parseAgentConfig(testdata('gitlab-13-cluster-management.yaml'), file);
    expect(value.cilium?.hubble_relay_address).toBe('hubble-relay.gitlab-managed-apps.svc.cluster.local:80');
    expect(value.observability?.logging?.level).toBe('debug');
    // GitOps is Verdict's too: the projects are synchronised, only the 13.x filters are not.
    expect(value.gitops?.manifest_projects).toHaveLength(1);
    expect(warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`)).toEqual([
      notUsed(7, 'gitops.manifest_projects[0].resource_inclusions', FILTERS),
      notUsed(10, 'gitops.manifest_projects[0].resource_exclusions', FILTERS),
    ]);
  });

  it('14.x: every cli-utils option, a numeric project id, empty enum values', () => {
    expect(warningsOf(testdata('gitlab-14-gitops.yaml'))).toEqual([]);
  });

  it('15.x-17.x: refs, a manifest project without id, every access_as, environments, protected branches, user_access, grpc_level, google_profiler', () => {
    const { value, warnings } = parseAgentConfig(testdata('gitlab-15-ci-access.yaml'), file);
    expect(value.observability?.logging?.level).toBe('warn');
    // ci_access is Verdict's too (the CI tunnel): validated, defaulted, passed on.
    expect(value.ci_access?.projects?.map((p) => p.id)).toEqual(['acme/platform/app', 'acme/platform/api', '4211']);
    expect(value.ci_access?.groups?.[0]?.environments).toEqual(['production']);
    expect(warnings.map((w) => `${w.line}: ${w.path}: ${w.message}`)).toEqual([
      notUsed(44, 'user_access', 'Verdict has no Kubernetes API proxy for users'),
      notUsed(54, 'observability.logging.grpc_level', 'Verdict logs gRPC at observability.logging.level'),
      notUsed(55, 'observability.google_profiler', 'Verdict has no Google Cloud Profiler integration'),
    ]);
  });

  it('15.x: experimental Helm charts with values inline, from a file and from a URL', () => {
    expect(warningsOf(testdata('gitlab-15-helm-charts.yaml'))).toEqual([notUsed(4, 'gitops.charts', CHARTS)]);
  });

  it('15.x: a chart without a source, values in two forms', () => {
    const warnings = warningsOf(
      'gitops:\n  charts:\n    - release_name: x\n      values:\n        - inline: {a: 1}\n          url: {url: "https://x/v.yaml"}\n',
    );
    expect(warnings).toContain(
      `3: gitops.charts[0].source: is required (the GitLab agent would refuse this; Verdict does not use gitops.charts, so it is ignored)`,
    );
    expect(warnings).toContain(
      `6: gitops.charts[0].values[0]: set only one of inline, file, url; found inline and url (the GitLab agent would refuse this; Verdict does not use gitops.charts, so it is ignored)`,
    );
  });

  it('16.x-18.x: remote_development, flux, container_scanning, starboard', () => {
    expect(warningsOf(testdata('gitlab-16-workspaces.yaml'))).toEqual([
      notUsed(3, 'remote_development', 'Verdict does not run workspaces'),
      notUsed(47, 'flux', 'Verdict does not notify Flux'),
      notUsed(49, 'container_scanning', 'Verdict does not scan container images'),
      notUsed(71, 'starboard', 'Verdict does not scan container images'),
    ]);
  });

  it("Verdict's blocks beside GitLab's and a section no version has", () => {
    const { value, warnings } = parseAgentConfig(testdata('verdict-with-gitlab-keys.yaml'), file);
    expect(value.cilium?.alert_namespaces).toEqual(['shop', 'db']);
    expect(value.falco?.http?.listen).toBe('0.0.0.0:2801');
    // Blocks Verdict does not act on are not passed to the agent.
    expect(Object.keys(value).sort()).toEqual(['ci_access', 'cilium', 'falco', 'gitops', 'observability']);
    expect(warnings.map((w) => `${w.line}: ${w.path}`)).toEqual(['20: agent_upgrades']);
  });

  it('17.11: ci_access.instance, every project of the instance', () => {
    expect(warningsOf('ci_access:\n  instance:\n    access_as:\n      ci_job: {}\n    protected_branches_only: true\n')).toEqual([]);
  });

  it('accepts access_as: {agent: {}} without a warning about agent', () => {
    expect(warningsOf('ci_access:\n  projects:\n    - id: a/b\n      access_as:\n        agent: {}\n')).toEqual([]);
  });
});

describe('keys Verdict does not use are checked with the original rules, as warnings', () => {
  const suffix = (root: string) => `(the GitLab agent would refuse this; Verdict does not use ${root}, so it is ignored)`;

  it.each([
    [
      'a bad log level',
      'observability:\n  logging:\n    grpc_level: verbose\n',
      '3: observability.logging.grpc_level: must be one of "info", "debug", "warn", "error"; got "verbose"',
    ],
    [
      'a cadence that is no cron',
      'container_scanning:\n  cadence: daily\n',
      '2: container_scanning.cadence: "daily" is not valid: a cron schedule such as "0 0 * * *"',
    ],
    [
      'an egress rule that is no CIDR',
      'remote_development:\n  network_policy:\n    egress:\n      - allow: 10.0.0.0\n',
      '4: remote_development.network_policy.egress[0].allow: "10.0.0.0" is not an IP range in CIDR notation, e.g. 10.0.0.0/8',
    ],
    [
      'user_access as two forms',
      'user_access:\n  access_as:\n    agent: {}\n    user: {}\n',
      '4: user_access.access_as: set only one of agent, user; found agent and user',
    ],
  ])('%s', (_name, text, warning) => {
    const warnings = warningsOf(text);
    const root = warning.split(': ')[1]!.split(/[.[]/)[0]!;
    expect(warnings).toContain(`${warning} ${suffix(root === 'observability' ? 'observability.logging.grpc_level' : root)}`);
  });

  it('an unknown key inside a GitLab block (ci_access, used) is a warning', () => {
    expect(warningsOf('ci_access:\n  projects:\n    - id: a/b\n      allowed_runners: [x]\n')).toContain(
      '4: ci_access.projects[0].allowed_runners: unknown key, ignored: no version of the GitLab agent or of Verdict has it',
    );
  });

  it('a misspelt key of a ci_access entry is an error: the restriction it drops would widen access', () => {
    const widen = 'a misspelt restriction would be ignored and widen access';
    expect(errorsOf('ci_access:\n  projects:\n    - id: a/b\n      environment: [production]\n')).toEqual([
      `4: ci_access.projects[0].environment: unknown key; rename it to environments: ${widen}`,
    ]);
    expect(errorsOf('ci_access:\n  groups:\n    - id: a\n      protected_branch_only: true\n')).toEqual([
      `4: ci_access.groups[0].protected_branch_only: unknown key; rename it to protected_branches_only: ${widen}`,
    ]);
    expect(errorsOf('ci_access:\n  instance:\n    enviroments: [production]\n')).toEqual([
      `3: ci_access.instance.enviroments: unknown key; rename it to environments: ${widen}`,
    ]);
    expect(errorsOf('ci_access:\n  groups:\n    - id: a\n      access_as:\n        impersonate:\n          username: u\n          group: [g]\n')).toEqual([
      '7: ci_access.groups[0].access_as.impersonate.group: unknown key; rename it to groups: a misspelt key would be ignored and change whom the job acts as',
    ]);
  });
});

describe('keys Verdict uses stay errors with file, path and line', () => {
  it.each([
    [
      'a log level',
      'observability:\n  logging:\n    level: verbose\n',
      '3: observability.logging.level: must be one of "info", "debug", "warn", "error"; got "verbose"',
    ],
    [
      'a mapping where a block belongs',
      'cilium: [a]\n',
      '1: cilium: must be a mapping with keys such as hubble_relay_address, policies, alert_namespaces, alert_clusterwide, cluster_name, …',
    ],
    // The keys Verdict acts on, not the GitLab agent's that it ignores (user_access, starboard, …).
    [
      'a list as the whole file',
      '- cilium:\n    hubble_relay_address: relay:80\n',
      '1: : must be a mapping with keys such as observability, cilium, falco, gitops, ci_access, …',
    ],
    [
      'access_as as a word',
      'ci_access:\n  projects:\n    - id: a/b\n      access_as: ci_job\n',
      '4: ci_access.projects[0].access_as: must be a mapping, e.g. access_as: {ci_job: {}}',
    ],
    [
      'ci_job as a word',
      'ci_access:\n  groups:\n    - id: a\n      access_as:\n        ci_job: yes\n',
      '5: ci_access.groups[0].access_as.ci_job: must be a mapping, e.g. ci_job: {}',
    ],
    ['a project as a path', 'ci_access:\n  projects: [a/b]\n', '2: ci_access.projects[0]: must be a mapping, e.g. - id: group/project'],
    [
      'environments as a word',
      'ci_access:\n  projects:\n    - id: a/b\n      environments: production\n',
      '4: ci_access.projects[0].environments: must be a list, e.g. environments: [production]',
    ],
    [
      'environments as a mapping',
      'ci_access:\n  projects:\n    - id: a/b\n      environments:\n        production: true\n',
      '5: ci_access.projects[0].environments: must be a list (start each item with "- ")',
    ],
    [
      'a uid YAML reads as a number',
      'ci_access:\n  projects:\n    - id: a/b\n      access_as:\n        impersonate:\n          username: u\n          uid: 1000\n',
      '7: ci_access.projects[0].access_as.impersonate.uid: must be a string (quote it: uid: "1000")',
    ],
    [
      'a flag in quotes',
      'ci_access:\n  groups:\n    - id: a\n      protected_branches_only: "true"\n',
      '4: ci_access.groups[0].protected_branches_only: must be true or false, without quotes',
    ],
    [
      'access_as with two forms',
      'ci_access:\n  projects:\n    - id: a/b\n      access_as:\n        agent: {}\n        ci_job: {}\n',
      '6: ci_access.projects[0].access_as: set only one of agent, impersonate, ci_job; found agent and ci_job',
    ],
    [
      'access_as with none',
      'ci_access:\n  projects:\n    - id: a/b\n      access_as:\n        agent:\n',
      '4: ci_access.projects[0].access_as: set exactly one of agent, impersonate, ci_job (agent has no value); e.g. access_as: {ci_job: {}}',
    ],
    [
      'impersonate without username',
      'ci_access:\n  groups:\n    - id: a\n      access_as:\n        impersonate:\n          groups: [x]\n',
      '6: ci_access.groups[0].access_as.impersonate.username: is required',
    ],
    [
      'extra without val',
      'ci_access:\n  groups:\n    - id: a\n      access_as:\n        impersonate:\n          username: u\n          extra:\n            - key: k\n',
      '8: ci_access.groups[0].access_as.impersonate.extra[0].val: is required',
    ],
    [
      'protected_branches_only as text',
      'ci_access:\n  groups:\n    - id: a\n      protected_branches_only: "yes"\n',
      '4: ci_access.groups[0].protected_branches_only: must be true or false',
    ],
    [
      'a ref with branch and tag',
      'gitops:\n  manifest_projects:\n    - ref:\n        branch: main\n        tag: v1\n',
      '5: gitops.manifest_projects[0].ref: set only one of tag, branch, commit; found branch and tag',
    ],
    [
      'a bad dry-run strategy',
      'gitops:\n  manifest_projects:\n    - id: a/b\n      dry_run_strategy: always\n',
      '4: gitops.manifest_projects[0].dry_run_strategy: must be one of "", "none", "client", "server"; got "always"',
    ],
    [
      'a bad duration',
      'gitops:\n  manifest_projects:\n    - id: a/b\n      reconcile_timeout: an hour\n',
      '4: gitops.manifest_projects[0].reconcile_timeout: must be a duration such as 500ms, 10s, 5m or 1h, got "an hour"',
    ],
    [
      'a namespace that is no DNS label',
      'gitops:\n  manifest_projects:\n    - id: a/b\n      default_namespace: My_Apps\n',
      '4: gitops.manifest_projects[0].default_namespace: "My_Apps" is not valid: a Kubernetes namespace name: at most 63 lowercase letters, digits and dashes, starting and ending with a letter or digit',
    ],
    [
      'a duplicate project',
      'gitops:\n  manifest_projects:\n    - id: a/b\n    - id: a/b\n',
      '4: gitops.manifest_projects[1]: duplicate project id: a/b; list each project once',
    ],
    [
      'two projects without id',
      'gitops:\n  manifest_projects:\n    - paths: [{glob: "a/*.yaml"}]\n    - ref: {tag: v1}\n',
      '4: gitops.manifest_projects[1]: duplicate project id: (the configuration project); list each project once',
    ],
    [
      'an unclosed glob brace',
      'gitops:\n  manifest_projects:\n    - id: a/b\n      paths:\n        - glob: "**/*.{yaml,yml"\n',
      '5: gitops.manifest_projects[0].paths[0].glob: a "{" is never closed with "}"',
    ],
    [
      'a glob with an unclosed brace',
      'cilium:\n  hubble_relay_address: r:80\n  policies:\n    - glob: "policies/*.{yaml"\n',
      '4: cilium.policies[0].glob: a "{" is never closed with "}"',
    ],
    [
      'a duration',
      'cilium:\n  hubble_relay_address: r:80\n  dedup_window: 10\n',
      '3: cilium.dedup_window: must be a duration such as 500ms, 10s, 5m or 1h, got 10 (a number needs a unit: 10s)',
    ],
  ])('%s', (_name, text, error) => {
    expect(errorsOf(text)).toEqual([error]);
  });

  it('more than 100 paths in one manifest project', () => {
    const paths = Array.from({ length: 101 }, (_, i) => `        - glob: "d${i}/*.yaml"`).join('\n');
    expect(errorsOf(`gitops:\n  manifest_projects:\n    - id: a/b\n      paths:\n${paths}\n`)).toEqual([
      '5: gitops.manifest_projects[0].paths: has 101 items, more than 100 (the limit of the GitLab agent server for one project)',
    ]);
  });

  it('takes a log level by its number, as the original did', () => {
    expect(parseAgentConfig('observability:\n  logging:\n    level: 1\n', file).value.observability?.logging?.level).toBe('debug');
  });

  it('an unknown key in observability (a GitLab block) is a warning that suggests the key meant', () => {
    const { value, warnings } = parseAgentConfig('observability:\n  logging:\n    levle: debug\n', file);
    expect(value.observability?.logging?.level).toBe('info');
    expect(warnings.map(formatIssue)).toEqual([
      `${file}:3: observability.logging.levle: unknown key, ignored: no version of the GitLab agent or of Verdict has it (did you mean "level"?)`,
    ]);
  });

  it('reports errors and warnings in file order, and keeps the warnings beside the errors', () => {
    try {
      parseAgentConfig('gitops:\n  charts: []\ncilium:\n  hubble_relay_address: x\nobservability:\n  logging:\n    level: loud\n', file);
      expect.unreachable();
    } catch (e) {
      expect((e as ConfigError).issues.map((i) => i.line)).toEqual([4, 7]);
      expect((e as ConfigError).warnings.map((i) => i.path)).toEqual(['gitops.charts']);
    }
  });
});
