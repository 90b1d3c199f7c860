import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VerdictError } from '../shared/errors.js';
import { run } from './gitops.js';

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
  ])('%j', async (flags, message) => {
    const e = await run(['diff', ...flags, '--projects-dir', projects, '--kubeconfig', join(projects, 'none')]).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(VerdictError);
    expect((e as VerdictError).code).toBe('VERDICT_USAGE');
    expect((e as Error).message).toMatch(message);
  });
});
