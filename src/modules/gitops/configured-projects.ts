import { realpathSync } from 'node:fs';
import { parse } from 'yaml';
import { configPath } from '../../server/config/agent-config-path.js';
import { readAt } from '../../server/config/git-project.js';

// The manifest projects an agent's config.yaml lists at a commit, as the ids
// the agent asks for and reports ("" for the configuration project, listed
// without id): the commit last sent to the agent (removed-projects.ts) or the
// configuration project's head (the check for two entries of one repository).
// The ids are read as they stand, without the full schema: a file that is not
// YAML says nothing, and one the schema refuses is not served to the agent
// anyway.

/** The project ids of gitops.manifest_projects in their order, or undefined when config.yaml is not at the commit. */
export async function configuredProjects(configProject: string, agentName: string, commit: string): Promise<string[] | undefined> {
  const data = await readAt(configProject, commit, configPath(agentName));
  if (!data) return undefined;
  let config: unknown;
  try {
    // merge: entries built with `<<: *defaults` read as the server's validation reads them (yaml-aliases.ts).
    config = parse(data.toString('utf8'), { merge: true });
  } catch {
    // Not YAML at all: nothing can be said about its entries (callers read commits the server validated and sent).
    return undefined;
  }
  const doc = config as { gitops?: { manifest_projects?: ({ id?: unknown } | null)[] | null } | null } | null;
  const projects = doc?.gitops?.manifest_projects;
  if (!Array.isArray(projects)) return [];
  return projects.map((p) => (p?.id === undefined || p.id === null ? '' : String(p.id)));
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
 * Whether the entry asking for `projectId` names a repository an earlier entry of the agent's config.yaml (at the
 * configuration project's current commit) already names under another id: the configuration project without id and
 * by its path, or two ids of which one is a symlink to the other. Each entry has its own worker and inventory, so
 * both would apply the same objects, each refusing (must_match) or taking over and pruning the other's.
 */
export async function sharedRepository(
  configProject: string,
  agentName: string,
  commit: string,
  projectId: string,
  repo: string,
  resolve: (id: string) => string,
): Promise<SharedRepository | undefined> {
  const ids = await configuredProjects(configProject, agentName, commit);
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
