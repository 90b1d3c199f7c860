import { readAgentConfig } from '../../server/config/agent-config-loader.js';
import { configPath } from '../../server/config/agent-config-path.js';
import { headCommit } from '../../server/config/git-project.js';
import { VerdictError } from '../../shared/errors.js';
import type { Project } from './agent.js';
import { configProjectId } from './project-repos.js';

// An agent's gitops.manifest_projects entry for one project, as the agent runs
// it (`verdict gitops diff --agent`): its config.yaml at the configuration
// project's HEAD, which is what the server sends the agent, read with the
// server's one reader, so a file the server would refuse is refused here too.

export interface AgentEntry {
  /** The configuration project's HEAD, whose config.yaml was read. */
  commit: string;
  /** config.yaml's path in the configuration project. */
  file: string;
  entry: Project;
}

/**
 * The entry of `agent`'s config.yaml whose project is `projectId` (an id resolveProject made with the agent's
 * configuration project, so an entry without id matches the configuration project's id). Throws VERDICT_CONFIG_INVALID
 * when config.yaml cannot be read, VERDICT_NOT_FOUND when it lists no such project; each message says what to do.
 */
export async function agentEntry(agent: { name: string; config_project: string }, projectId: string, projectsDir: string): Promise<AgentEntry> {
  const file = configPath(agent.name);
  const where = `${file} in ${agent.config_project}`;
  let commit: string;
  let read: Awaited<ReturnType<typeof readAgentConfig>>;
  try {
    commit = await headCommit(agent.config_project);
    read = await readAgentConfig(agent.config_project, agent.name, commit);
  } catch (e) {
    throw new VerdictError('VERDICT_CONFIG_INVALID', `${agent.name}'s config.yaml cannot be read: ${(e as Error).message}`);
  }
  if (read.state !== 'valid') {
    // A missing file's message already says where to commit it.
    const fix = read.state === 'invalid' ? `; fix ${where} and commit it to its default branch (\`verdict config check\` checks it offline)` : '';
    throw new VerdictError('VERDICT_CONFIG_INVALID', `${agent.name}'s config.yaml cannot be read: ${read.error.message}${fix}`);
  }
  const entries = read.config.gitops?.manifest_projects;
  if (!entries) {
    throw new VerdictError(
      'VERDICT_NOT_FOUND',
      `${agent.name}'s config.yaml (${where} at ${commit.slice(0, 12)}) has no gitops block: the agent synchronises no project; add ${projectId} to gitops.manifest_projects, or give --agent the agent that synchronises it`,
    );
  }
  const ownId = configProjectId(agent.config_project, projectsDir);
  const idOf = (p: Project) => (!p.id || p.id === ownId ? ownId : p.id);
  const entry = entries.find((p) => idOf(p) === projectId);
  if (!entry) {
    const listed = entries.length ? `it lists ${entries.map((p) => p.id ?? `${ownId} (without id: the configuration project)`).join(', ')}` : 'it lists none';
    throw new VerdictError(
      'VERDICT_NOT_FOUND',
      `${agent.name}'s config.yaml (${where} at ${commit.slice(0, 12)}) has no gitops.manifest_projects entry for ${projectId}: ${listed}; give --project one of them, or --agent the agent that synchronises ${projectId}`,
    );
  }
  return { commit, file, entry };
}
