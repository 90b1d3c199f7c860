import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configuredProjects, sharedRepository } from './configured-projects.js';

// The check that refuses a second entry for one repository reads config.yaml at
// the configuration project's head: a head that is not YAML at all must leave
// every project served (the agent runs its last good configuration), not fail them.

describe('configuredProjects', () => {
  const repo = mkdtempSync(join(tmpdir(), 'verdict-gitops-configured-'));
  mkdirSync(join(repo, '.gitlab/agents/prod'), { recursive: true });
  const git = (...a: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.name=t', '-c', 'user.email=t@t', ...a]);
  git('init', '-q', '-b', 'main');
  const commit = (yaml: string) => {
    writeFileSync(join(repo, '.gitlab/agents/prod/config.yaml'), yaml);
    git('add', '-A');
    git('commit', '-q', '-m', 'c');
    return git('rev-parse', 'HEAD').toString().trim();
  };

  it('lists the ids in order ("" for the configuration project), and says nothing of a file that is not YAML', async () => {
    const good = commit('gitops:\n  manifest_projects:\n    - id: group/app\n    - paths: [{glob: "*.yaml"}]\n');
    expect(await configuredProjects(repo, 'prod', good)).toEqual(['group/app', '']);
    const broken = commit('gitops:\n  manifest_projects:\n    - id: group/app\n  manifest_projects: [dup]\n');
    expect(await configuredProjects(repo, 'prod', broken)).toBeUndefined();
    expect(await sharedRepository(repo, 'prod', broken, 'group/app', repo, () => repo)).toBeUndefined();
  });
});
