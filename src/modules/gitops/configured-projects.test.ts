import { describe, expect, it } from 'vitest';
import { ConfigProject, tempDir } from '../../../test/helpers/processes.js';
import { configuredProjects, sharedRepository } from './configured-projects.js';

// The check that refuses a second entry for one repository reads config.yaml at
// the configuration project's head: a head that is not YAML at all must leave
// every project served (the agent runs its last good configuration), not fail them.

describe('configuredProjects', () => {
  const project = new ConfigProject(tempDir('verdict-gitops-configured-'));
  const repo = project.dir;
  const commit = (yaml: string) => project.commit({ '.gitlab/agents/prod/config.yaml': yaml });

  it('lists the ids in order ("" for the configuration project), and says nothing of a file that is not YAML', async () => {
    const good = commit('gitops:\n  manifest_projects:\n    - id: group/app\n    - paths: [{glob: "*.yaml"}]\n');
    expect(await configuredProjects(repo, 'prod', good)).toEqual(['group/app', '']);
    const broken = commit('gitops:\n  manifest_projects:\n    - id: group/app\n  manifest_projects: [dup]\n');
    expect(await configuredProjects(repo, 'prod', broken)).toBeUndefined();
    expect(await sharedRepository(repo, 'prod', broken, 'group/app', repo, () => repo)).toBeUndefined();
  });
});
