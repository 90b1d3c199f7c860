import type { AgentRegistry } from '../../server/agents/agent-registry.js';
import type { ModuleAlerts } from '../../server/module.js';
import { resolveCommit } from '../../server/config/git-project.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { configuredProjects } from './configured-projects.js';
import { ACTOR, projectAlerts, projectName } from './report-service.js';
import type { SyncStatusStore } from './sync-status.js';

// Projects an agent's configuration no longer lists: their last sync status
// would otherwise show forever (nothing reports on them again), and their
// gitops alerts would stay open with nothing left to resolve them. The agent's
// configuration is the one this server last sent it (the agent registry's
// config status); a project it does not list loses its status row and its
// open alerts are resolved by actor gitops. Its objects stay in the cluster,
// as the agent leaves them. An agent whose configuration this server has not
// sent since it started (no config stream here) is left as it is.
//
// The commit last sent is not always the registered project's: an agent moved
// to another configuration project (`verdict agents set-project`) runs the old
// project's commit until the new project's configuration is sent, and the
// registry has the new project at once. A commit names its content, so its
// config.yaml reads the same from any repository that has it: the listing is
// kept per commit, whichever project it was read from, and a commit the
// registered project does not have is skipped (read again once the new
// project's commit is sent) instead of asking git for an object it lacks.

interface Listed {
  commit: string;
  ids: ReadonlySet<string>;
}

export class RemovedProjects {
  /** The project ids of each agent's configuration as last read, for listed(), which cannot wait for a read. */
  private readonly listedAt = new Map<string, Listed>();
  /** One check at a time per agent, in order. */
  private readonly chains = new Map<string, Promise<void>>();
  private closed = false;

  constructor(private readonly deps: { status: SyncStatusStore; alerts: ModuleAlerts; agents: AgentRegistry; log: Logger }) {}

  /** The projects the agent's current configuration lists, once read; undefined until then. */
  listed(agent: string): ReadonlySet<string> | undefined {
    const commit = this.deps.agents.configStatus(agent)?.commit_id;
    const known = this.listedAt.get(agent);
    return commit && known?.commit === commit ? known.ids : undefined;
  }

  /** Drops what the agent's configuration no longer lists. Never rejects: a failure is logged and the next check tries again. */
  check(agent: string): Promise<void> {
    const next = (this.chains.get(agent) ?? Promise.resolve())
      .then(() => this.drop(agent))
      .catch((e: unknown) => this.deps.log.error({ agent_name: agent, error: errText(e) }, 'GitOps: could not drop the sync status of removed projects'));
    this.chains.set(agent, next);
    void next.then(() => {
      if (this.chains.get(agent) === next) this.chains.delete(agent);
    });
    return next;
  }

  /** Checks still queued do nothing: the server is closing its database. */
  close(): void {
    this.closed = true;
  }

  private async drop(agent: string): Promise<void> {
    if (this.closed) return;
    const { status, alerts, agents, log } = this.deps;
    const record = agents.get(agent);
    const commit = agents.configStatus(agent)?.commit_id;
    if (!record || !commit) {
      this.listedAt.delete(agent);
      return;
    }
    let known = this.listedAt.get(agent);
    if (known?.commit !== commit) {
      if (!(await resolveCommit(record.config_project, commit))) {
        log.debug(
          { agent_name: agent, commit_id: commit, config_project: record.config_project },
          'GitOps: the configuration the agent runs is from the project it was moved from; removed projects are checked once the new one is sent',
        );
        return;
      }
      // configuredProjects reads a commit once for every reader; the set is made once per commit for listed().
      const ids = await configuredProjects(record.config_project, agent, commit);
      if (!ids) return;
      known = { commit, ids: new Set(ids) };
      this.listedAt.set(agent, known);
    }
    for (const projectId of status.projectIds(agent)) {
      if (known.ids.has(projectId)) continue;
      const open = projectAlerts(status, agent, projectId);
      const resolved = open.length ? await alerts.resolve(agent, 'gitops', open, ACTOR) : 0;
      status.forget(agent, projectId);
      log.info(
        { agent_name: agent, project_id: projectName(projectId), commit_id: commit, resolved },
        "GitOps: project removed from the agent's configuration; dropped its sync status and resolved its alerts",
      );
    }
  }
}
