import { describe, expect, it } from 'vitest';
import { configIssues } from '../../../test/helpers/server-config.js';
import { ciAccessSchema } from './config.js';

const errorsOf = (yaml: string) => configIssues(yaml, ciAccessSchema, 'config.yaml');

describe('ci_access access_as', () => {
  it('names a misspelt form and the one meant', () => {
    expect(errorsOf('projects:\n  - id: group/a\n    access_as: { agnet: {} }\n')).toEqual([
      '3: projects[0].access_as.agnet: unknown key; known keys: agent, impersonate, ci_job (did you mean "agent"?)',
    ]);
    expect(errorsOf('groups:\n  - id: group\n    access_as:\n      impersonat:\n        username: bob\n')).toEqual([
      '4: groups[0].access_as.impersonat: unknown key; known keys: agent, impersonate, ci_job (did you mean "impersonate"?)',
    ]);
    expect(errorsOf('instance:\n  access_as: {cijob: {}}\n')).toEqual([
      '2: instance.access_as.cijob: unknown key; known keys: agent, impersonate, ci_job (did you mean "ci_job"?)',
    ]);
  });
});
