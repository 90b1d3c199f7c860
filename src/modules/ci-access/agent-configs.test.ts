import { describe, expect, it } from 'vitest';
import { ConfigProject, gitCalls, tempDir } from '../../../test/helpers/processes.js';
import { headCommit } from '../../server/config/git-project.js';
import { ConfigError } from '../../shared/config/schema.js';
import type { Logger } from '../../shared/log/logger.js';
import { CiAccessConfigs } from './agent-configs.js';

// The server decides who may use an agent with its ci_access block at the
// configuration project's current commit; a commit that does not validate
// leaves the block of the newest commit before it that does in force, as the
// agent keeps its last good configuration, rather than refusing every CI job
// with 503. The rule is the history's, so a reader just started (a restarted
// server, `verdict kubeconfig`) decides as one that has run all along.

describe('CiAccessConfigs', () => {
  const project = new ConfigProject(tempDir('verdict-ci-configs-'));
  const repo = project.dir;
  const git = (...a: string[]) => project.git(...a);
  const commit = (yaml: string) => project.commit({ '.gitlab/agents/prod/config.yaml': yaml });
  const agent = { name: 'prod', config_project: repo };

  it('keeps deciding with the last good block while config.yaml does not validate; so does a fresh reader', async () => {
    const warnings: unknown[] = [];
    const log = { warn: (o: unknown, msg: string) => warnings.push({ ...(o as object), msg }) } as unknown as Logger;
    const configs = new CiAccessConfigs(headCommit, log);
    const good = commit('ci_access:\n  projects:\n    - id: shop/app\n');
    expect((await configs.get(agent))?.projects?.map((p) => p.id)).toEqual(['shop/app']);

    const bad = commit('ci_access:\n  projects:\n    - id: shop/app\n      protected_branches_only: "yes please"\n');
    expect((await configs.get(agent))?.projects?.map((p) => p.id)).toEqual(['shop/app']);
    expect(warnings).toEqual([
      expect.objectContaining({
        agent_name: 'prod',
        commit_id: bad,
        last_good_commit_id: good,
        error: expect.stringMatching(/config\.yaml:4: ci_access\.projects\[0\]\.protected_branches_only: must be true or false/),
        msg: 'CI tunnel: invalid configuration; deciding with the ci_access block of the last good one',
      }),
    ]);
    // Kept per commit: the warning is not repeated for every request.
    await configs.get(agent);
    expect(warnings).toHaveLength(1);

    // A reader that read nothing before (a server just started, `verdict kubeconfig`): the same last good block,
    // past several broken commits.
    commit('ci_access: [nope]\n');
    expect((await new CiAccessConfigs(headCommit).get(agent))?.projects?.map((p) => p.id)).toEqual(['shop/app']);

    commit('ci_access:\n  groups:\n    - id: platform\n');
    const now = await configs.get(agent);
    expect(now?.projects).toEqual([]);
    expect(now?.groups?.map((g) => g.id)).toEqual(['platform']);
  });

  it('refuses with the error when config.yaml was never valid since it was added', async () => {
    const p = new ConfigProject(tempDir('verdict-ci-configs-new-'));
    p.commit({ 'README.md': 'x' });
    p.commit({ '.gitlab/agents/prod/config.yaml': 'ci_access:\n  projects:\n    - id: shop/app\n      protected_branches_only: "yes please"\n' });
    p.commit({ '.gitlab/agents/prod/config.yaml': 'ci_access:\n  projects: 3\n' });
    const a = { name: 'prod', config_project: p.dir };
    await expect(new CiAccessConfigs(headCommit).get(a)).rejects.toThrow(ConfigError);
    await expect(new CiAccessConfigs(headCommit).get(a)).rejects.toThrow(/projects/);
  });

  it('takes the access away when config.yaml is deleted: no configuration is not an invalid one', async () => {
    const configs = new CiAccessConfigs(headCommit);
    commit('ci_access:\n  instance: {}\n');
    expect(await configs.get(agent)).toEqual(expect.objectContaining({ instance: expect.anything() }));
    git('rm', '-q', '.gitlab/agents/prod/config.yaml');
    git('commit', '-q', '-m', 'no more agent config');
    await expect(configs.get(agent)).rejects.toThrow(/file not found at commit/);
  });

  // The loader says whether config.yaml is missing or invalid: telling the two apart costs no second read of the file.
  it('reads config.yaml once per commit, whether it is valid, invalid or missing', async () => {
    const configs = new CiAccessConfigs(headCommit);
    const reads = async () => (await gitCalls(() => configs.get(agent).catch(() => {}))).filter((c) => c.includes('.gitlab/agents/prod/config.yaml'));
    commit('ci_access:\n  instance: {}\n');
    expect(await reads()).toHaveLength(2); // ls-tree, then cat-file
    commit('ci_access:\n  instance: {default_namespace: "Not A Namespace"}\n');
    // The invalid commit, then the one before it, kept since.
    expect(await reads()).toHaveLength(2);
    expect(await new CiAccessConfigs(headCommit).get(agent)).toEqual(expect.objectContaining({ instance: expect.anything() }));
    expect(await configs.get(agent)).toEqual(expect.objectContaining({ instance: expect.anything() }));
    git('rm', '-q', '.gitlab/agents/prod/config.yaml');
    git('commit', '-q', '-m', 'no more agent config');
    expect(await reads()).toHaveLength(1); // ls-tree finds no file
    await expect(configs.get(agent)).rejects.toThrow(/file not found at commit/);
  });
});
