import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../server/config/agent-config.js';

// The gitops block as people write it: mistakes get a message that names the file, line and key, and the fix.

const errorOf = (yaml: string) => {
  try {
    parseAgentConfig(yaml, '.gitlab/agents/prod/config.yaml');
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
};

describe('gitops config', () => {
  it('an unquoted glob starting with "*" (a YAML alias) says to quote it', () => {
    expect(errorOf('gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - glob: **/*.yaml\n')).toBe(
      '.gitlab/agents/prod/config.yaml:5: gitops.manifest_projects[0].paths[0].glob: is a YAML alias (**/*.yaml) naming no anchor: a glob starting with "*" must be quoted, glob: "**/*.yaml"',
    );
    // Quoted, it is a glob like any other.
    expect(errorOf('gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - glob: "**/*.yaml"\n')).toBeUndefined();
  });

  // Inventory names come from the project id (inventory-<agent>-<id>, lowercase and dashed): two ids that make the
  // same name would prune each other's objects, so the configuration that holds both is refused.
  it.each([
    [
      '  - default_namespace: a\n  - id: config\n',
      '.gitlab/agents/prod/config.yaml:4: gitops.manifest_projects[1].id: this entry (id: config) and gitops.manifest_projects[0] (no id: the configuration project) would share one inventory, inventory-<agent>-config',
    ],
    [
      '  - id: config\n  - ref: {branch: main}\n',
      '.gitlab/agents/prod/config.yaml:4: gitops.manifest_projects[1]: this entry (no id: the configuration project) and gitops.manifest_projects[0] (id: config) would share one inventory, inventory-<agent>-config',
    ],
    [
      '  - id: group/app\n  - id: Group.App\n',
      '.gitlab/agents/prod/config.yaml:4: gitops.manifest_projects[1].id: this entry (id: Group.App) and gitops.manifest_projects[0] (id: group/app) would share one inventory, inventory-<agent>-group-app',
    ],
  ])('refuses two projects that would share an inventory: %j', (entries, message) => {
    const error = errorOf(`gitops:\n  manifest_projects:\n${entries}`);
    expect(error).toContain(message);
    expect(error).toContain(
      "so each project's sync would prune the other's objects; keep one of the two in this agent's config.yaml and synchronise the other with another agent",
    );
  });

  it('accepts ids whose inventories differ, and still says a repeated id is a duplicate', () => {
    expect(errorOf('gitops:\n  manifest_projects:\n  - {}\n  - id: group/app\n  - id: group/app2\n  - id: configs\n')).toBeUndefined();
    expect(errorOf('gitops:\n  manifest_projects:\n  - id: group/app\n  - id: group/app\n')).toBe(
      '.gitlab/agents/prod/config.yaml:4: gitops.manifest_projects[1]: duplicate project id: group/app; list each project once',
    );
  });
});
