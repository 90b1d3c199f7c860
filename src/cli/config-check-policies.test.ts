import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigProject, FIXTURES, REPO, tempDir } from '../../test/helpers/processes.js';
import { parseProjectPolicies } from '../modules/cilium/policy/parse.js';
import { loadAgentConfiguration, PROJECT_FILE_LIMITS } from '../server/config/agent-config-loader.js';
import { ConfigError } from '../shared/config/schema.js';

// `verdict config check` on a configuration project whose cilium block selects
// policy files: the built CLI, run in the project as a pre-commit hook or CI job
// runs it, with Cilium's example policies and broken copies of them.

const BIN = join(REPO, 'bin/verdict.js');
const POLICIES = join(FIXTURES, 'policies/cilium');
const fixture = (name: string) => readFileSync(join(POLICIES, name), 'utf8');

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function project(files: Record<string, string>): string {
  const d = tempDir('verdict-config-check-policies-');
  dirs.push(d);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(d, path, '..'), { recursive: true });
    writeFileSync(join(d, path), text);
  }
  return d;
}

function check(cwd: string, ...args: string[]): { code: number | null; lines: string[] } {
  const r = spawnSync(process.execPath, [BIN, 'config', 'check', ...args], { cwd, encoding: 'utf8', timeout: 20_000 });
  expect(r.stderr).toBe('');
  return { code: r.status, lines: r.stdout.split('\n').slice(0, -1) };
}

const CONFIG = 'cilium:\n  hubble_relay_address: hubble-relay.kube-system.svc:80\n  policies:\n    - glob: policies/**/*.yaml\n    - glob: /netpol/*.json\n';
const ANNOTATED = fixture('l3__simple__l3.yaml').replace('  name: "l3-rule"\n', '  name: "l3-rule"\n  annotations:\n    app.gitlab.com/alert: "true"\n');

describe('verdict config check: the policy files cilium.policies selects', () => {
  it("passes Cilium's example policies, counting them; a glob that selects nothing is a warning at its line", () => {
    const d = project({
      '.gitlab/agents/prod/config.yaml': CONFIG,
      'policies/l3.yaml': ANNOTATED,
      'policies/l7/http.yaml': fixture('l7__http__http.yaml'),
      'policies/sw_deny.yaml': fixture('minikube__sw_deny_policy.yaml'),
      // Not a network policy: the agent passes over it without a word.
      'policies/envoy.yaml': fixture('l4__envoy_forward_proxy_cec.yaml'),
    });
    const { code, lines } = check(d, '.');
    expect(lines).toEqual([
      `warning: .gitlab/agents/prod/config.yaml:5: cilium.policies[1].glob: "/netpol/*.json" matches no file in .; fix the pattern (it is relative to the project's root) or remove it`,
      '.gitlab/agents/prod/config.yaml: cilium.policies: 3 network policies in 4 files under ., 1 annotated app.gitlab.com/alert: "true"',
      '.gitlab/agents/prod/config.yaml: valid (0 errors, 1 warning)',
    ]);
    expect(code).toBe(0);
  });

  it('fails for a policy the agent would skip, naming file, line, policy and field as the agent logs it; its warnings are warnings', () => {
    const d = project({
      '.gitlab/agents/prod/config.yaml': CONFIG,
      'policies/l3.yaml': ANNOTATED,
      // The service-labels example as Cilium ships it: loads, with a part no flow can match.
      'policies/service.yaml': fixture('l3__service__service-labels.yaml'),
      'policies/l4.yaml': fixture('l4__l4.yaml').replace("port: '80'", "port: '99999'").replace('port: "80"', 'port: "99999"'),
      'policies/sw_deny.yaml': `${fixture('minikube__sw_deny_policy.yaml')}---\n${fixture('l7__http__http.yaml').replace('  endpointSelector:', ' endpointSelector:')}`,
      'policies/label.yaml': fixture('l7__http__simple__l7.yaml').replace(/^metadata:\n/m, 'metadata:\n  labels:\n    app.gitlab.com/alert: "true"\n'),
      'policies/again/l3.yaml': ANNOTATED,
      'netpol/bare.json': JSON.stringify([{ endpointSelector: { matchLabels: { app: 'db' } }, ingress: [{}] }]),
      // Outside the globs: the agent never sees it.
      'other/broken.yaml': 'kind: [\n',
    });
    const { code, lines } = check(d, '.');
    expect(lines).toEqual([
      'error: netpol/bare.json:1: a Cilium rule list as `cilium policy import` reads it (a list of rules with endpointSelector and ingress/egress, no apiVersion or kind), not a Kubernetes object; wrap it as "apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: <name>}, specs: <the list>" (clusterwide, as imported rules apply in every namespace), or as kind: CiliumNetworkPolicy with metadata.namespace to limit it to one namespace; these rules are ignored until then (the other policies still apply)',
      // The first in git's order (the server's): policies/again/ before policies/l3.yaml.
      'error: policies/l3.yaml:1: CiliumNetworkPolicy/default/l3-rule: defined again (first in policies/again/l3.yaml); this definition is ignored and the first one is used; rename one of them, or remove the copy',
      'error: policies/l4.yaml:1: CiliumNetworkPolicy/default/l4-rule: spec.egress[0].toPorts[0].ports[0].port: 99999 is not a port number (0-65535); fix the manifest, this policy is ignored until then (the other policies still apply)',
      expect.stringMatching(
        /^warning: policies\/label\.yaml:1: CiliumNetworkPolicy\/default\/rule1: metadata\.labels\.app\.gitlab\.com\/alert is a label; Verdict reads the annotation, so this policy raises no alerts/,
      ),
      'warning: policies/service.yaml:1: CiliumNetworkPolicy/default/service-labels-rule: spec.egress[0].toServices[0].k8sServiceSelector: flows do not carry service labels, so this peer matches no flow',
      'error: policies/sw_deny.yaml:21: l7-rule: YAML error at column 1: All mapping items must start at the same column; fix the YAML, this document is ignored until then (the other documents and files still apply)',
      '.gitlab/agents/prod/config.yaml: cilium.policies: 4 network policies in 7 files under ., 1 annotated app.gitlab.com/alert: "true"',
      '.gitlab/agents/prod/config.yaml: invalid (4 errors, 2 warnings); the agent would skip the policies in error and match flows against the others',
    ]);
    expect(code).toBe(1);
  });

  it("reads a config.yaml outside .gitlab/agents/ against its git work tree, with the paths as given; an invalid config.yaml's policies are not read", () => {
    const repo = new ConfigProject(tempDir('verdict-config-check-git-'));
    dirs.push(repo.dir);
    repo.commit({
      'deploy/agent/config.yaml': 'cilium:\n  hubble_relay_address: relay.example:80\n  policies:\n    - glob: netpol/*.yaml\n',
      'netpol/l4.yaml': fixture('l4__l4.yaml').replace(/^kind: CiliumNetworkPolicy$/m, 'kind: CiliumNetworkPolicy\nspecs: 3'),
      'deploy/broken/config.yaml': 'cilium:\n  hubble_relay_address: relay\n  policies:\n    - glob: netpol/*.yaml\n',
    });
    const file = join(repo.dir, 'deploy/agent/config.yaml');
    const { code, lines } = check(REPO, file);
    expect(lines).toEqual([
      `error: ${join(repo.dir, 'netpol/l4.yaml')}:1: CiliumNetworkPolicy/default/l4-rule: specs: expected a list; fix the manifest, this policy is ignored until then (the other policies still apply)`,
      `${file}: cilium.policies: 0 network policies in 1 file under ${repo.dir}, 0 annotated app.gitlab.com/alert: "true"`,
      `${file}: invalid (1 error, 0 warnings); the agent would skip the policies in error and match flows against the others`,
    ]);
    expect(code).toBe(1);
    const broken = check(REPO, join(repo.dir, 'deploy/broken/config.yaml'));
    expect(broken.lines).toHaveLength(2);
    expect(broken.lines[0]).toMatch(/^error: .*:2: cilium\.hubble_relay_address: "relay" is not valid/);
  });

  it('reads the files of the commit the server would serve: symlinks as the path git stores, node_modules included, untracked and ignored files left out', async () => {
    const repo = new ConfigProject(tempDir('verdict-config-check-git-files-'));
    dirs.push(repo.dir);
    mkdirSync(join(repo.dir, 'policies'));
    // git stores a symlink as a blob holding its target's path; the server sends that, and the agent cannot parse it.
    symlinkSync('../outside/real.yaml', join(repo.dir, 'policies/link.yaml'));
    symlinkSync('/etc/hostname', join(repo.dir, 'policies/abs.yaml'));
    const head = repo.commit({
      '.gitlab/agents/prod/config.yaml': 'cilium:\n  hubble_relay_address: relay.example:80\n  policies:\n    - glob: "**/policies/*.yaml"\n',
      '.gitignore': 'policies/ignored.yaml\n',
      'policies/good.yaml': ANNOTATED,
      'outside/real.yaml': fixture('l4__l4.yaml'),
      'node_modules/x/policies/bad.yaml': 'kind: [\n',
      'policies/ignored.yaml': 'kind: [\n',
    });
    // Never committed, so never served.
    writeFileSync(join(repo.dir, 'policies/untracked.yaml'), 'kind: [\n');
    const served = await loadAgentConfiguration(repo.dir, 'prod', head);
    expect(served.files.map((f) => f.path)).toEqual(['node_modules/x/policies/bad.yaml', 'policies/abs.yaml', 'policies/good.yaml', 'policies/link.yaml']);
    // What the agent makes of them, named as the check names them (relative to the project's root, here ".").
    const agent = parseProjectPolicies(served.files.map((f) => ({ path: f.path, data: Buffer.from(f.data) })));
    expect(agent.errors).toHaveLength(3);
    const { code, lines } = check(repo.dir, '.');
    expect(lines).toEqual([
      ...agent.errors.map((e) => `error: ${e.message}`),
      '.gitlab/agents/prod/config.yaml: cilium.policies: 1 network policy in 4 files under ., 1 annotated app.gitlab.com/alert: "true"',
      '.gitlab/agents/prod/config.yaml: invalid (3 errors, 0 warnings); the agent would skip the policies in error and match flows against the others',
    ]);
    expect(code).toBe(1);
    // A glob that selects only files git does not hold says how to fix that.
    writeFileSync(
      join(repo.dir, '.gitlab/agents/prod/config.yaml'),
      'cilium:\n  hubble_relay_address: relay.example:80\n  policies:\n    - glob: policies/untracked.yaml\n',
    );
    expect(check(repo.dir, '.').lines[0]).toBe(
      'warning: .gitlab/agents/prod/config.yaml:4: cilium.policies[0].glob: "policies/untracked.yaml" matches no file tracked by git in .; fix the pattern (it is relative to the project\'s root), `git add` the files or remove it',
    );
  });

  it("holds the selected files to the server's limits, which refuse the config.yaml", async () => {
    const repo = new ConfigProject(tempDir('verdict-config-check-limits-'));
    dirs.push(repo.dir);
    const many: Record<string, string> = {};
    for (let i = 0; i <= PROJECT_FILE_LIMITS.files; i++) many[`many/${i}.yaml`] = '';
    const head = repo.commit({
      '.gitlab/agents/prod/config.yaml': 'cilium:\n  hubble_relay_address: relay.example:80\n  policies:\n    - glob: many/*.yaml\n',
      '.gitlab/agents/big/config.yaml': 'cilium:\n  hubble_relay_address: relay.example:80\n  policies:\n    - glob: big/*.yaml\n',
      'big/a.yaml': `# ${'x'.repeat(PROJECT_FILE_LIMITS.fileBytes)}\n`,
      ...many,
    });
    // The server's words for each, as the check prints them.
    const refused = async (agent: string) => {
      const e = await loadAgentConfiguration(repo.dir, agent, head).catch((e: unknown) => e);
      expect(e).toBeInstanceOf(ConfigError);
      return (e as ConfigError).issues[0]!;
    };
    const tooMany = await refused('prod');
    const tooBig = await refused('big');
    const { code, lines } = check(repo.dir, '.');
    expect(lines).toEqual([
      `error: ${tooBig.file}: (document): ${tooBig.message}`,
      '.gitlab/agents/big/config.yaml: invalid (1 error, 0 warnings); the server would refuse it and the agent would keep its last good configuration',
      `error: ${tooMany.file}: ${tooMany.path}: ${tooMany.message}`,
      '.gitlab/agents/prod/config.yaml: invalid (1 error, 0 warnings); the server would refuse it and the agent would keep its last good configuration',
    ]);
    expect(tooMany.message).toBe('globs select 1001 files, over the limit of 1000; narrow them');
    expect(tooBig.message).toBe('file is 5242883 bytes, over the 5242880-byte limit; split it');
    expect(code).toBe(1);
  });
});
