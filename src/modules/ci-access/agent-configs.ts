import { readAgentConfig } from '../../server/config/agent-config-loader.js';
import type { Logger } from '../../shared/log/logger.js';
import type { CiAccessConfig } from './config.js';

// The ci_access block of an agent's config.yaml, as the server decides with it
// who may use the agent. Read at the configuration project's current commit
// (the caller says how to find it: a poller in the server, git in the CLI)
// with the server's one reader, which keeps it per commit, so a request costs
// no git call while nothing changed.
// A commit whose config.yaml does not validate leaves the last good block in
// force, as the agent keeps its last good configuration (and as GitLab kept
// the authorizations of the last configuration it could parse): a typo pushed
// to the configuration project must not lock every CI job out of the cluster.
// A process that has read no good block yet (just started) refuses with the
// error instead, and so does every process once config.yaml is gone.

export interface AgentRef {
  name: string;
  config_project: string;
}

type Block = CiAccessConfig | undefined;

export class CiAccessConfigs {
  /** The block of the last commit that validated, per agent; `seq` orders the reads, so a slow older one does not win. */
  private readonly lastGood = new Map<string, { repo: string; commit: string; block: Block; seq: number }>();
  /** The invalid commit each agent was last warned of: the warning is logged once per commit, not per request. */
  private readonly warned = new Map<string, string>();
  private reads = 0;

  constructor(
    private readonly commitOf: (repo: string) => Promise<string>,
    private readonly log?: Logger,
  ) {}

  /**
   * The agent's ci_access block at the current commit (undefined when it has none), or the last good one when
   * config.yaml does not validate there; throws when it cannot be read, or is invalid and no good one was read.
   */
  async get(agent: AgentRef): Promise<Block> {
    const commit = await this.commitOf(agent.config_project);
    // Reads start in the order commits are seen, so a later read is of the same commit or a newer one.
    const seq = ++this.reads;
    const read = await readAgentConfig(agent.config_project, agent.name, commit);
    if (read.state === 'valid') {
      const block = read.config.ci_access as Block;
      if ((this.lastGood.get(agent.name)?.seq ?? 0) < seq) this.lastGood.set(agent.name, { repo: agent.config_project, commit, block, seq });
      return block;
    }
    const good = this.lastGood.get(agent.name);
    // A deleted config.yaml (or agent directory) is no configuration, not an invalid one: it takes the access away.
    if (read.state === 'missing' || good?.repo !== agent.config_project) throw read.error;
    if (this.warned.get(agent.name) !== commit) {
      this.warned.set(agent.name, commit);
      this.log?.warn(
        { agent_name: agent.name, commit_id: commit, error: read.error.message, last_good_commit_id: good.commit },
        'CI tunnel: invalid configuration; deciding with the ci_access block of the last good one',
      );
    }
    return good.block;
  }
}
