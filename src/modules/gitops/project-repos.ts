import { realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';
import { VerdictError } from '../../shared/errors.js';

// Which git repository a manifest project id names. The server's projects_dir
// holds the repositories by path (group/project, or group/project.git); the
// configuration project is one of them when it lies under projects_dir, and
// an empty id means it whatever its place. Numeric ids, which real config
// files use, are names like any other: <projects_dir>/<id> (a symlink to the
// repository, made by whoever assigns the numbers).

export interface ResolvedProject {
  /** The id as the agent will see it in headers and status: the path under projects_dir, or the configuration project's path. */
  id: string;
  repo: string;
}

const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** The configuration project's id: its path under projects_dir, else its own path. */
export function configProjectId(configProject: string, projectsDir: string | undefined): string {
  if (projectsDir) {
    try {
      const rel = relative(realpathSync(projectsDir), realpathSync(configProject));
      if (rel && !rel.startsWith('..') && !isAbsolute(rel))
        return rel
          .split(sep)
          .join('/')
          .replace(/\.git$/, '');
    } catch {
      // A missing directory is reported when a project is looked up in it.
    }
  }
  return configProject;
}

export function resolveProject(id: string, configProject: string, projectsDir: string | undefined): ResolvedProject {
  const ownId = configProjectId(configProject, projectsDir);
  if (id === '' || id === ownId) return { id: ownId, repo: configProject };
  if (!projectsDir) {
    throw new VerdictError(
      'VERDICT_NOT_FOUND',
      `project ${id} not found: this server has no projects_dir, so only the configuration project (${ownId}) can be synchronised; set projects_dir in the server config`,
    );
  }
  // Ids are paths, so one with "..", "." or an absolute path could read any directory of the server.
  const segments = id.split('/');
  if (!segments.every((s) => SEGMENT.test(s) && s !== '.' && s !== '..')) {
    throw new VerdictError(
      'VERDICT_NOT_FOUND',
      `project ${id} not found: an id is a project path (group/project) of letters, digits, "_", "-" and "." segments, or a numeric id`,
    );
  }
  for (const candidate of [join(projectsDir, ...segments), `${join(projectsDir, ...segments)}.git`]) {
    if (isDir(candidate)) return { id, repo: candidate };
  }
  const numeric = /^\d+$/.test(id) ? `; numeric ids resolve to ${join(projectsDir, id)}: make it a symlink to the project's repository` : '';
  throw new VerdictError('VERDICT_NOT_FOUND', `project ${id} not found under projects_dir ${projectsDir} (looked for ${id} and ${id}.git)${numeric}`);
}
