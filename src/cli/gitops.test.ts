import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { AgentRegistry } from '../server/agents/agent-registry.js';
import { openServerDb } from '../server/store/server-db.js';
import { VerdictError } from '../shared/errors.js';
import { freePort } from '../../test/helpers/processes.js';
import { EXIT, run } from './gitops.js';

// `verdict gitops diff` with flag values that name nothing: usage errors (exit 2) that name the flag,
// never exit 1, which tells a pipeline the sync would change something. The diff itself: test/gitops/diff.test.ts.

describe('verdict gitops diff: wrong flag values', () => {
  const projects = mkdtempSync(join(tmpdir(), 'verdict-gitops-cli-'));
  const repo = join(projects, 'group', 'app');
  mkdirSync(repo, { recursive: true });
  writeFileSync(join(repo, 'cm.yaml'), 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n');
  const git = (...a: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...a]);
  git('init', '-q', '-b', 'main');
  git('add', '-A');
  git('commit', '-q', '-m', 'c');

  it.each([
    [['--project', 'group/nope'], /^verdict gitops diff: --project: project group\/nope not found under projects_dir /],
    [['--project', '../etc'], /^verdict gitops diff: --project: project \.\.\/etc not found: an id is a project path/],
    [['--project', 'group/app', '--ref', 'nope'], /^verdict gitops diff: --ref: branch nope not found in project group\/app$/],
    [['--project', 'group/app', '--ref', 'commit:xyz'], /^verdict gitops diff: --ref: commit "xyz" is not a commit id/],
    [['--project', 'group/app', '--path', 'm/{a,b'], /^verdict gitops diff: --path m\/\{a,b: a "\{" is never closed with "\}"; fix it/],
    [['--project', 'group/app', '--namespace', 'Bad_NS'], /^verdict gitops diff: --namespace Bad_NS: not a Kubernetes namespace name: at most 63 lowercase/],
    [['--project', 'group/app', '--namespace', ''], /^verdict gitops diff: --namespace : not a Kubernetes namespace name/],
  ])('%j', async (flags, message) => {
    const e = await run(['diff', ...flags, '--projects-dir', projects, '--kubeconfig', join(projects, 'none')]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VerdictError);
    expect((e as VerdictError).code).toBe('VERDICT_USAGE');
    expect((e as Error).message).toMatch(message);
  });

  it('without Kubernetes credentials says how to give the diff some, not what the agent would do', async () => {
    vi.stubEnv('KUBECONFIG', '');
    vi.stubEnv('KUBERNETES_SERVICE_HOST', '');
    vi.stubEnv('HOME', projects);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await run(['diff', '--project', 'group/app', '--projects-dir', projects])).toBe(EXIT.error);
      const text = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(text).toMatch(/no Kubernetes credentials: .*; pass --kubeconfig, or set KUBECONFIG, to the cluster the agent syncs to\n$/);
      expect(text).not.toContain('cilium');
    } finally {
      stderr.mockRestore();
      vi.unstubAllEnvs();
    }
  });

  it("an API server it cannot reach is named with the kubeconfig, as the agent's GitOps names it", async () => {
    const port = await freePort();
    const kubeconfig = join(projects, 'wrong-port.kubeconfig');
    writeFileSync(
      kubeconfig,
      `apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: {server: "https://127.0.0.1:${port}", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n`,
    );
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await run(['diff', '--project', 'group/app', '--projects-dir', projects, '--kubeconfig', kubeconfig])).toBe(EXIT.error);
      expect(stderr.mock.calls.map((c) => String(c[0])).join('')).toBe(
        `verdict gitops diff: could not run: cannot reach the Kubernetes API server at https://127.0.0.1:${port} (credentials: kubeconfig ${kubeconfig} (context c)): connect ECONNREFUSED 127.0.0.1:${port}; check that the API server is up and reachable from this machine, and that this is its address\n`,
      );
    } finally {
      stderr.mockRestore();
    }
  });

  // --agent reads the agent's entry, flags winning, and --help says so.
  it('--help says what --agent reads', async () => {
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    try {
      expect(await run(['--help'])).toBe(0);
    } finally {
      spy.mockRestore();
    }
    const help = out.join('').replace(/\s+/g, ' ');
    expect(help).toContain(
      "With --agent, the agent's config.yaml is read as the server sends it (its configuration project, from the server's database, at HEAD)",
    );
    expect(help).toContain('--ref, --path and --namespace, when given, win');
    expect(help).toContain('--data-dir <dir>');
  });

  // Exit 1 says the sync would change something: a diff that could not run must not read as that.
  it('exits 4, above 1 as kubectl diff does for errors, when the cluster cannot be read', async () => {
    const kubeconfig = join(projects, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
    );
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    let code: number;
    try {
      code = await run(['diff', '--project', 'group/app', '--projects-dir', projects, '--kubeconfig', kubeconfig]);
    } finally {
      spy.mockRestore();
    }
    expect(code).toBe(EXIT.error);
    expect(code).toBe(4);
    expect(err.join('')).toMatch(/^verdict gitops diff: could not run: .*127\.0\.0\.1:1/);
  });
});

// --agent reads the agent's gitops.manifest_projects entry from its config.yaml (the diff itself: test/gitops/diff.test.ts);
// each way that can fail says what to do, before the cluster is asked anything.
describe('verdict gitops diff --agent: the agent and its config.yaml', () => {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-gitops-agent-'));
  const projects = join(dir, 'projects');
  const app = join(projects, 'group', 'app');
  const commit = (repo: string, files: Record<string, string>) => {
    const git = (...a: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...a]);
    mkdirSync(repo, { recursive: true });
    git('init', '-q', '-b', 'main');
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(repo, f, '..'), { recursive: true });
      writeFileSync(join(repo, f), text);
    }
    git('add', '-A');
    git('commit', '-q', '--allow-empty', '-m', 'c');
  };
  commit(app, { 'cm.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n' });
  const config = join(dir, 'config');
  commit(config, {
    '.gitlab/agents/broken/config.yaml': 'gitops:\n  manifest_projects:\n    - id: group/app\n      default_namespace: Bad_NS\n',
    '.gitlab/agents/quiet/config.yaml': 'observability:\n  logging: {level: info}\n',
    '.gitlab/agents/other/config.yaml': 'gitops:\n  manifest_projects:\n    - id: group/x\n    - default_namespace: shop\n',
  });
  const data = join(dir, 'data');
  mkdirSync(data);
  const db = openServerDb(data);
  const registry = new AgentRegistry(db);
  for (const name of ['bare', 'broken', 'quiet', 'other']) registry.register(name, config);
  db.close();

  const diff = (...flags: string[]) => run(['diff', '--project', 'group/app', '--projects-dir', projects, '--kubeconfig', join(dir, 'none'), ...flags]);
  const usage = async (flags: string[]) => {
    const e = await diff(...flags).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VerdictError);
    expect((e as VerdictError).code).toBe('VERDICT_USAGE');
    return (e as Error).message;
  };
  /** A diff that could not run: exit 4 and what it wrote on stderr. */
  const failed = async (flags: string[]) => {
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
      err.push(String(s));
      return true;
    });
    try {
      expect(await diff(...flags)).toBe(EXIT.error);
    } finally {
      spy.mockRestore();
    }
    return err.join('');
  };

  it('without the server database, names the flag that gives it', async () => {
    expect(await usage(['--agent', 'edge', '--data-dir', join(dir, 'nowhere')])).toMatch(
      /^verdict gitops diff --agent: there is no Verdict server database at .*nowhere\/server\.db; give --data-dir the server's data_dir, or --config its server\.yaml/,
    );
  });

  it('refuses an agent the database does not hold, naming those it does', async () => {
    expect(await usage(['--agent', 'edge', '--data-dir', data])).toMatch(
      /^verdict gitops diff: --agent edge: no such agent in the server's database in .*data \(registered: (bare|broken|quiet|other)(, (bare|broken|quiet|other)){3}\); give the name of the agent/,
    );
  });

  it("quotes the reader's error when config.yaml is missing", async () => {
    expect(await failed(['--agent', 'bare', '--data-dir', data])).toMatch(
      /^verdict gitops diff: could not run: bare's config\.yaml cannot be read: \.gitlab\/agents\/bare\/config\.yaml: \(document\): file not found at commit [0-9a-f]{12}; commit it to the default branch of .*config\n$/,
    );
  });

  it("quotes the reader's error when config.yaml does not validate", async () => {
    expect(await failed(['--agent', 'broken', '--data-dir', data])).toMatch(
      /^verdict gitops diff: could not run: broken's config\.yaml cannot be read: \.gitlab\/agents\/broken\/config\.yaml:4: gitops\.manifest_projects\[0\]\.default_namespace: .*; fix \.gitlab\/agents\/broken\/config\.yaml in .*config and commit it/,
    );
  });

  it('refuses a config.yaml without a gitops block', async () => {
    expect(await usage(['--agent', 'quiet', '--data-dir', data])).toMatch(
      /^verdict gitops diff: quiet's config\.yaml \(\.gitlab\/agents\/quiet\/config\.yaml in .*config at [0-9a-f]{12}\) has no gitops block: the agent synchronises no project; add group\/app to gitops\.manifest_projects/,
    );
  });

  it('refuses a --project the config.yaml does not list, listing those it does', async () => {
    expect(await usage(['--agent', 'other', '--data-dir', data])).toMatch(
      /^verdict gitops diff: other's config\.yaml \(.*\) has no gitops\.manifest_projects entry for group\/app: it lists group\/x, .*config \(without id: the configuration project\); give --project one of them/,
    );
  });
});
