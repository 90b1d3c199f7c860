import { realpathSync } from 'node:fs';
import { readAgentConfig } from '../../server/config/agent-config-loader.js';
import { configPath } from '../../server/config/agent-config-path.js';

// The manifest projects an agent's config.yaml lists at a commit, as the ids
// the agent asks for and reports ("" for the configuration project, listed
// without id): the commit last sent to the agent (removed-projects.ts) or the
// configuration project's head (the check for two entries of one repository).
// Read with the server's one reader, as the agent is sent them, and kept by it
// per commit (each manifest project's poll and each reconnect asks again): a
// config.yaml that does not validate is never served, so it says nothing about
// which projects the agent runs (it keeps its last good configuration).

/** The project ids of gitops.manifest_projects in their order, or undefined when config.yaml is missing or invalid at the commit. */
export async function configuredProjects(configProject: string, agentName: string, commit: string): Promise<string[] | undefined> {
  const read = await readAgentConfig(configProject, agentName, commit);
  if (read.state !== 'valid') return undefined;
  return (read.config.gitops?.manifest_projects ?? []).map((p) => p.id ?? '');
}

/** Two entries of config.yaml that name one repository: `index` is the later one, the one refused. */
interface SharedRepository {
  file: string;
  index: number;
  id: string;
  earlier: number;
  earlierId: string;
}

/**
 * Whether the entry asking for `projectId` names a repository an earlier entry of the agent's config.yaml (`ids`, as
 * configuredProjects reads them) already names under another id: the configuration project without id and by its
 * path, or two ids of which one is a symlink to the other. Each entry has its own worker and inventory, so both would
 * apply the same objects, each refusing (must_match) or taking over and pruning the other's.
 */
export function sharedRepository(
  ids: readonly string[] | undefined,
  agentName: string,
  projectId: string,
  repo: string,
  resolve: (id: string) => string,
): SharedRepository | undefined {
  const index = ids?.indexOf(projectId) ?? -1;
  if (!ids || index <= 0) return undefined;
  const real = (id: string) => {
    try {
      return realpathSync(resolve(id));
    } catch {
      // An entry that names nothing is refused on its own request.
      return undefined;
    }
  };
  const mine = realpathSync(repo);
  const earlier = ids.slice(0, index).findIndex((id) => real(id) === mine);
  if (earlier < 0) return undefined;
  return { file: configPath(agentName), index, id: projectId, earlier, earlierId: ids[earlier]! };
}
