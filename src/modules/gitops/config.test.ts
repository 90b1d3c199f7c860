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
      '.gitlab/agents/prod/config.yaml:5: gitops.manifest_projects[0].paths[0].glob: is a YAML alias (**/*.yaml), which the configuration does not resolve: a glob starting with "*" must be quoted, glob: "**/*.yaml"',
    );
    // Quoted, it is a glob like any other.
    expect(errorOf('gitops:\n  manifest_projects:\n  - id: group/app\n    paths:\n    - glob: "**/*.yaml"\n')).toBeUndefined();
  });
});
