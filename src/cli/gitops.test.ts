import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { VerdictError } from '../shared/errors.js';
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

  // --agent names the inventory to prune against; the agent's config.yaml is not read, and --help says so.
  it('--help says what --agent reads and what it does not', async () => {
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
    expect(help).toContain("No agent's config.yaml is read");
    expect(help).toContain('(ConfigMap inventory-<name>-<project> in --namespace)');
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
