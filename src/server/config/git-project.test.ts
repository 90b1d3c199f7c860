import { execFileSync } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { headCommit } from './git-project.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function project(): string {
  const d = mkdtempSync(join(tmpdir(), 'verdict-project-'));
  dirs.push(d);
  return d;
}

function chownTree(path: string, uid: number): void {
  chownSync(path, uid, uid);
  if (statSync(path).isDirectory()) for (const n of readdirSync(path)) chownTree(join(path, n), uid);
}

describe('configuration project', () => {
  it('tells to run git init when the path is no repository', async () => {
    await expect(headCommit(project())).rejects.toThrow(/is not a git repository with a commit on its default branch .*run `git init` there/);
  });

  // Only root can give a directory to another user.
  it.skipIf(process.getuid?.() !== 0)('tells to add safe.directory when git refuses a repository another user owns', async () => {
    const repo = project();
    const git = (...a: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@example.com', ...a]);
    git('init', '-q');
    mkdirSync(join(repo, '.gitlab/agents/edge'), { recursive: true });
    writeFileSync(join(repo, '.gitlab/agents/edge/config.yaml'), 'cilium: {}\n');
    git('add', '.');
    git('commit', '-qm', 'config');
    chownTree(repo, 65534);
    const saved = process.env.GIT_CONFIG_GLOBAL;
    process.env.GIT_CONFIG_GLOBAL = '/dev/null';
    try {
      await expect(headCommit(repo)).rejects.toThrow(/belongs to another user than this server's.*add it to safe.directory/);
    } finally {
      if (saved === undefined) delete process.env.GIT_CONFIG_GLOBAL;
      else process.env.GIT_CONFIG_GLOBAL = saved;
    }
  });
});
