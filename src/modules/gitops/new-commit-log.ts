import type { ServerConfig } from '../../shared/config/server-config.js';
import type { Logger } from '../../shared/log/logger.js';

// `GitOps: new commit` says a commit of a project reached an agent: once per
// commit, not once per stream that carries it. An agent asks again for the
// commit it has whenever its GitOps module restarts (its block changed, e.g.
// after `verdict agents set-project`) or a batch was cut off, and a move can
// end a stream just as the restarted module opens another: each of those is
// sent the commit again, which is logged at debug only.

/** Per server (its config object, as serverState is keyed), per agent and project: the commit last logged as new. */
const lastLogged = new WeakMap<ServerConfig, Map<string, string>>();

export function logNewCommit(config: ServerConfig, log: Logger, fields: { agent: string; projectId: string; commit: string; ref: string }): void {
  let byProject = lastLogged.get(config);
  if (!byProject) lastLogged.set(config, (byProject = new Map()));
  const key = `${fields.agent}\0${fields.projectId}`;
  const line = { commit_id: fields.commit, ref: fields.ref };
  if (byProject.get(key) === fields.commit) {
    log.debug(line, 'GitOps: sending the same commit again');
    return;
  }
  byProject.set(key, fields.commit);
  log.info(line, 'GitOps: new commit');
}
