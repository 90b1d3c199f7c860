import { renameSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigProject, gitCalls, tempDir } from '../../../test/helpers/processes.js';
import { CiAccessConfigs } from '../../modules/ci-access/agent-configs.js';
import { configuredProjects } from '../../modules/gitops/configured-projects.js';
import { isVerdictError } from '../../shared/errors.js';
import { agentConfigReader, loadAgentConfiguration, readAgentConfig } from './agent-config-loader.js';
import { headCommit } from './git-project.js';

// Every reader of an agent's config.yaml on the server (the configuration
// stream, ci_access decisions, GitOps' project lists) shares one read of a
// commit: one git read and one parse, one answer for missing and invalid.

const FILE = '.gitlab/agents/prod/config.yaml';
const project = new ConfigProject(tempDir('verdict-config-reads-'));
const repo = project.dir;
const commit = (yaml: string) => project.commit({ [FILE]: yaml });
/** The git commands `fn` runs that read a config.yaml. */
const configReads = async (fn: () => Promise<unknown>) => (await gitCalls(fn)).filter((c) => c.includes('/config.yaml'));

describe('readAgentConfig', () => {
  it('reads a commit from git once for the configuration stream, ci_access and GitOps', async () => {
    const c = commit('ci_access:\n  instance: {}\ngitops:\n  manifest_projects:\n    - id: group/app\n');
    const reads = await configReads(async () => {
      expect((await loadAgentConfiguration(repo, 'prod', c)).config.gitops?.manifest_projects?.map((p) => p.id)).toEqual(['group/app']);
      expect(await new CiAccessConfigs(headCommit).get({ name: 'prod', config_project: repo })).toEqual(expect.objectContaining({ instance: {} }));
      expect(await configuredProjects(repo, 'prod', c)).toEqual(['group/app']);
      expect(await configuredProjects(repo, 'prod', c)).toEqual(['group/app']);
    });
    expect(reads).toEqual([`-C ${repo} ls-tree -z --name-only ${c} -- ${FILE}`, `-C ${repo} cat-file blob ${c}:${FILE}`]);
  });

  it('reads an invalid or missing config.yaml once too, and says which it is', async () => {
    const invalid = commit('ci_access:\n  instance: {default_namespace: "Not A Namespace"}\n');
    const reads = await configReads(async () => {
      const [a, b] = await Promise.all([readAgentConfig(repo, 'prod', invalid), readAgentConfig(repo, 'prod', invalid)]);
      expect(a).toBe(b);
      expect(a).toEqual({ state: 'invalid', error: expect.objectContaining({ message: expect.stringMatching(/default_namespace/) }) });
      // ci_access decides with the last commit whose config.yaml is valid (the first test's).
      expect(await new CiAccessConfigs(headCommit).get({ name: 'prod', config_project: repo })).toEqual(expect.objectContaining({ instance: {} }));
      expect(await configuredProjects(repo, 'prod', invalid)).toBeUndefined();
      expect((await readAgentConfig(repo, 'other', invalid)).state).toBe('missing');
      await expect(loadAgentConfiguration(repo, 'other', invalid)).rejects.toThrow(/file not found at commit/);
    });
    expect(reads).toHaveLength(3); // ls-tree and cat-file of prod's, ls-tree of other's (no file)
  });

  it('is frozen: a reader that changed it would change what every other reader of the commit sees', async () => {
    const read = await readAgentConfig(repo, 'prod', commit('ci_access:\n  projects:\n    - id: shop/app\n'));
    if (read.state !== 'valid') throw new Error(`expected a valid config.yaml, got ${read.state}`);
    expect(() => read.config.ci_access?.projects?.push({ id: 'shop/other' } as never)).toThrow(TypeError);
    expect(() => {
      read.config.ci_access = undefined;
    }).toThrow(TypeError);
  });

  it('tries git again after a read that failed', async () => {
    const c = commit('ci_access: {}\n');
    const away = `${repo}-away`;
    renameSync(repo, away);
    try {
      const failed = await readAgentConfig(repo, 'prod', c).catch((e: unknown) => e);
      expect(isVerdictError(failed, 'VERDICT_GIT')).toBe(true);
    } finally {
      renameSync(away, repo);
    }
    expect((await readAgentConfig(repo, 'prod', c)).state).toBe('valid');
  });

  it("keeps every agent's latest read, however many agents, and up to its limit of older ones", async () => {
    const read = agentConfigReader(2);
    const c1 = commit('observability: {}\n');
    // Agents without a config.yaml at the commit: one git command (ls-tree) per read.
    const gitFor = async (reads: [string, string][]) => (await configReads(() => Promise.all(reads.map(([a, c]) => read(repo, a, c))))).length;
    const agents = ['a', 'b', 'c', 'd', 'e'];
    expect(await gitFor(agents.map((a) => [a, c1]))).toBe(5);
    expect(read(repo, 'a', c1)).toBe(read(repo, 'a', c1));
    // Five agents with a limit of two: their latest reads are all kept.
    expect(await gitFor(agents.map((a) => [a, c1]))).toBe(0);
    const c2 = commit('observability: {}\n# 2\n');
    const c3 = commit('observability: {}\n# 3\n');
    const c4 = commit('observability: {}\n# 4\n');
    expect(await gitFor([['a', c2]])).toBe(1);
    expect(await gitFor([['a', c3]])).toBe(1);
    expect(await gitFor([['a', c4]])).toBe(1);
    // Older reads of a: c3 and c2 kept (the limit), c1 out first.
    expect(
      await gitFor([
        ['a', c4],
        ['a', c2],
      ]),
    ).toBe(0);
    expect(await gitFor([['a', c1]])).toBe(1);
  });
});
