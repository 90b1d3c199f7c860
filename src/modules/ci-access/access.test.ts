import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../server/config/agent-config.js';
import { decideAccess, environmentSlug, groupsOf, impersonationFor } from './access.js';
import type { CiAccessConfig } from './config.js';
import type { CiJob } from './job-tokens.js';

const block = (yaml: string) => parseAgentConfig(yaml, 'config.yaml').value.ci_access as CiAccessConfig;
const job = (o: Partial<CiJob> & { project: string }): CiJob => ({
  id: 7,
  environment: '',
  ref: '',
  protected: false,
  created_at: 0,
  expires_at: 1,
  revoked_at: null,
  ...o,
});

const CONFIG = block(`ci_access:
  projects:
    - id: shop/app
      default_namespace: app
      environments: [production]
      access_as: {ci_job: {}}
  groups:
    - id: shop
      default_namespace: shop
    - id: prod/eu
      protected_branches_only: true
      access_as:
        impersonate: {username: deployer, groups: [d], uid: "1", extra: [{key: reason, val: [ci]}]}
`);

describe('decideAccess', () => {
  it('a project entry comes first; a job it refuses falls back to a group above the project, as in GitLab', () => {
    expect(decideAccess(CONFIG, job({ project: 'shop/app', environment: 'production' }), 'edge')).toMatchObject({
      allowed: true,
      via: 'ci_access.projects[0] (shop/app)',
      default_namespace: 'app',
    });
    expect(decideAccess(CONFIG, job({ project: 'shop/app', environment: 'staging' }), 'edge')).toMatchObject({
      allowed: true,
      via: 'ci_access.groups[0] (shop)',
      default_namespace: 'shop',
    });
  });

  it('groups match every project below them, not a sibling with the same prefix', () => {
    expect(decideAccess(CONFIG, job({ project: 'prod/eu/web/api', protected: true, ref: 'main' }), 'edge')).toMatchObject({
      allowed: true,
      via: 'ci_access.groups[1] (prod/eu)',
    });
    expect(decideAccess(CONFIG, job({ project: 'prod/eux' }), 'edge')).toEqual({
      allowed: false,
      reason:
        'project prod/eux is not in ci_access.projects, under ci_access.groups or allowed by ci_access.instance of agent "edge"; add it to that agent\'s config.yaml',
    });
  });

  it('compares project and group paths without regard to case, as GitLab looks them up', () => {
    expect(decideAccess(CONFIG, job({ project: 'Shop/App', environment: 'production' }), 'edge')).toMatchObject({
      allowed: true,
      via: 'ci_access.projects[0] (shop/app)',
    });
    expect(decideAccess(CONFIG, job({ project: 'PROD/EU/web', protected: true, ref: 'main' }), 'edge')).toMatchObject({
      allowed: true,
      via: 'ci_access.groups[1] (prod/eu)',
    });
    expect(decideAccess(block('ci_access: {}'), job({ project: 'Acme/Infra' }), 'edge', 'acme/infra')).toMatchObject({ allowed: true });
  });

  it('says which rule refused: environments (with wildcards) and protected branches', () => {
    const envOnly = block('ci_access:\n  projects:\n    - id: a/b\n      environments: [review/*]\n');
    expect(decideAccess(envOnly, job({ project: 'a/b', environment: 'review/feature-1' }), 'e').allowed).toBe(true);
    expect(decideAccess(envOnly, job({ project: 'a/b', environment: 'reviewer' }), 'e')).toEqual({
      allowed: false,
      reason: 'ci_access.projects[0] (a/b) allows only environments review/*, not "reviewer"',
    });
    expect(decideAccess(envOnly, job({ project: 'a/b' }), 'e')).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('has none; create its token with --environment'),
    });
    expect(decideAccess(CONFIG, job({ project: 'prod/eu/x', ref: 'feature' }), 'e')).toEqual({
      allowed: false,
      reason: 'ci_access.groups[1] (prod/eu) allows only jobs on protected branches and job 7 runs on "feature", not protected',
    });
  });

  it('instance allows every project; no block allows nothing', () => {
    expect(decideAccess(block('ci_access:\n  instance: {}\n'), job({ project: 'x/y' }), 'e')).toMatchObject({ allowed: true, via: 'ci_access.instance' });
    expect(decideAccess(undefined, job({ project: 'x/y' }), 'e')).toEqual({ allowed: false, reason: 'agent "e" has no ci_access block in its config.yaml' });
  });
});

describe('the configuration project (implicit access, as in GitLab)', () => {
  const restricted = block(`ci_access:
  projects:
    - id: shop/app
  groups:
    - id: infra
      default_namespace: ops
      environments: [production]
      access_as: {ci_job: {}}
`);

  it('is allowed without an entry, as the agent, in any environment and on any ref', () => {
    for (const j of [job({ project: 'infra/agents' }), job({ project: 'infra/agents', environment: 'staging', ref: 'feature' })])
      expect(decideAccess(restricted, j, 'edge', 'infra/agents')).toEqual({
        allowed: true,
        via: 'the configuration project of agent "edge" (implicit)',
        default_namespace: '',
        access_as: { agent: {}, impersonate: undefined, ci_job: undefined },
      });
    // Even an empty block is enough.
    expect(decideAccess(block('ci_access: {}\n'), job({ project: 'infra/agents' }), 'edge', 'infra/agents').allowed).toBe(true);
  });

  it("comes after the project's own entry and before the groups above it", () => {
    const own = block(`ci_access:
  projects:
    - id: infra/agents
      default_namespace: own
      access_as: {ci_job: {}}
  groups:
    - id: infra
      default_namespace: ops
`);
    expect(decideAccess(own, job({ project: 'infra/agents' }), 'edge', 'infra/agents')).toMatchObject({
      via: 'ci_access.projects[0] (infra/agents)',
      default_namespace: 'own',
      access_as: { ci_job: {} },
    });
    // A group entry above the configuration project never decides for it: the implicit access comes first.
    expect(decideAccess(restricted, job({ project: 'infra/agents', environment: 'production' }), 'edge', 'infra/agents')).toMatchObject({
      via: 'the configuration project of agent "edge" (implicit)',
    });
  });

  it('is only the configuration project: another project of its group is not allowed by it, and without the block nothing is', () => {
    expect(decideAccess(restricted, job({ project: 'infra/other' }), 'edge', 'infra/agents')).toMatchObject({
      allowed: false,
      reason: 'ci_access.groups[0] (infra) allows only jobs of environments production and job 7 has none; create its token with --environment',
    });
    expect(decideAccess(undefined, job({ project: 'infra/agents' }), 'edge', 'infra/agents')).toEqual({
      allowed: false,
      reason: 'agent "edge" has no ci_access block in its config.yaml (its configuration project needs no entry, but the block must be there: ci_access: {})',
    });
  });
});

describe('impersonationFor', () => {
  it('ci_job: the original user, groups and extra fields', () => {
    const i = impersonationFor(
      { agent: undefined, impersonate: undefined, ci_job: {} },
      { job: job({ id: 42, project: 'g/s/p', environment: 'Review/Feature_1' }), agentId: 3, configProject: 'acme/infra' },
    );
    expect(i).toEqual({
      username: 'gitlab:ci_job:42',
      groups: ['gitlab:ci_job', 'gitlab:project:g/s/p', 'gitlab:group:g/s', 'gitlab:group:g', 'gitlab:project_env:g/s/p:review-feature-1'],
      uid: '',
      extra: {
        'agent.gitlab.com/id': { values: ['3'] },
        'agent.gitlab.com/config_project_id': { values: ['acme/infra'] },
        'agent.gitlab.com/project_id': { values: ['g/s/p'] },
        'agent.gitlab.com/ci_job_id': { values: ['42'] },
        'agent.gitlab.com/environment_slug': { values: ['review-feature-1'] },
      },
    });
  });

  it('impersonate: as configured; agent: none', () => {
    const d = decideAccess(CONFIG, job({ project: 'prod/eu/x', protected: true }), 'e');
    if (!d.allowed) throw new Error(d.reason);
    expect(impersonationFor(d.access_as, { job: job({ project: 'prod/eu/x' }), agentId: 1, configProject: 'p' })).toEqual({
      username: 'deployer',
      groups: ['d'],
      uid: '1',
      extra: { reason: { values: ['ci'] } },
    });
    expect(
      impersonationFor({ agent: {}, impersonate: undefined, ci_job: undefined }, { job: job({ project: 'a' }), agentId: 1, configProject: 'p' }),
    ).toBeUndefined();
  });

  it('groups above a project, closest first; environment slugs', () => {
    expect(groupsOf('a/b/c')).toEqual(['a/b', 'a']);
    expect(groupsOf('c')).toEqual([]);
    expect(environmentSlug('Production')).toBe('production');
    expect(environmentSlug('review/a-very-long-branch-name-here')).toBe('review-a-very-long-branc');
  });
});
