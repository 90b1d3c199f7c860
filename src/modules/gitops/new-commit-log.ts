import type { ServerConfig } from '../../shared/config/server-config.js';
import type { Logger } from '../../shared/log/logger.js';

// `GitOps: new commit` says a commit of a project reached an agent: once per
// commit, not once per stream that carries it. An agent asks again for the
// commit it has whenever its GitOps module restarts (its block changed, e.g.
// after `verdict agents set-project`) or a batch was cut off, and a move can
// end a stream just as the restarted module opens another: each of those is
// sent the commit again, which is logged at debug only.

// The entries are kept for the agents and projects last sent a commit, up to
// a bound: agents and projects come and go over a server's life (removed from
// config.yaml, moved, deleted), and an entry dropped costs no more than one
// more `new commit` line at info when its commit is sent again.

/** Agents' projects whose last commit is kept, per server; the least recently sent one goes first. */
export const NEW_COMMITS_KEPT = 10_000;

/** Per server (its config object, as serverState is keyed), per agent and project: the commit last logged as new, least recently sent first. */
const lastLogged = new WeakMap<ServerConfig, Map<string, string>>();

export function logNewCommit(config: ServerConfig, log: Logger, fields: { agent: string; projectId: string; commit: string; ref: string }): void {
  let byProject = lastLogged.get(config);
  if (!byProject) lastLogged.set(config, (byProject = new Map()));
  const key = `${fields.agent}\0${fields.projectId}`;
  const line = { commit_id: fields.commit, ref: fields.ref };
  const last = byProject.get(key);
  // Taken out and put back: a Map iterates in insertion order, so this one is now the most recently sent.
  byProject.delete(key);
  byProject.set(key, fields.commit);
  if (last === fields.commit) {
    log.debug(line, 'GitOps: sending the same commit again');
    return;
  }
  if (byProject.size > NEW_COMMITS_KEPT) byProject.delete(byProject.keys().next().value as string);
  log.info(line, 'GitOps: new commit');
}
