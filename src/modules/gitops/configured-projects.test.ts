import { describe, expect, it } from 'vitest';
import { ConfigProject, tempDir } from '../../../test/helpers/processes.js';
import { configuredProjects, sharedRepository } from './configured-projects.js';

// The check that refuses a second entry for one repository reads config.yaml at
// the configuration project's head: a head the server's loader refuses (not YAML,
// or against the schema) must leave every project served (the agent runs its
// last good configuration), not fail them.

describe('configuredProjects', () => {
  const project = new ConfigProject(tempDir('verdict-gitops-configured-'));
  const repo = project.dir;
  const commit = (yaml: string) => project.commit({ '.gitlab/agents/prod/config.yaml': yaml });

  it('lists the ids in order ("" for the configuration project), and says nothing of a file that is not YAML', async () => {
    const good = commit('gitops:\n  manifest_projects:\n    - id: group/app\n    - paths: [{glob: "*.yaml"}]\n');
    expect(await configuredProjects(repo, 'prod', good)).toEqual(['group/app', '']);
    const broken = commit('gitops:\n  manifest_projects:\n    - id: group/app\n  manifest_projects: [dup]\n');
    expect(await configuredProjects(repo, 'prod', broken)).toBeUndefined();
    expect(sharedRepository(await configuredProjects(repo, 'prod', broken), 'prod', 'group/app', repo, () => repo)).toBeUndefined();
  });

  it('reads config.yaml as the loader validates it: ids as the agent is sent them, nothing from a file it refuses', async () => {
    const numeric = commit('gitops:\n  manifest_projects:\n    - id: 42\n    - &app {id: group/app}\n');
    expect(await configuredProjects(repo, 'prod', numeric)).toEqual(['42', 'group/app']);
    expect(await configuredProjects(repo, 'prod', commit(''))).toEqual([]);
    // YAML, but a value the schema refuses: the agent never gets this commit, so its entries refuse nothing.
    const invalid = commit('gitops:\n  manifest_projects:\n    - {}\n    - id: group/app\n      prune: "yes please"\n');
    expect(await configuredProjects(repo, 'prod', invalid)).toBeUndefined();
    expect(sharedRepository(await configuredProjects(repo, 'prod', invalid), 'prod', 'group/app', repo, () => repo)).toBeUndefined();
    expect(await configuredProjects(repo, 'gone', invalid)).toBeUndefined();
  });
});
