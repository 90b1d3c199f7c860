import { readAgentConfig } from '../../server/config/agent-config-loader.js';
import { git } from '../../server/config/git-project.js';
import type { Logger } from '../../shared/log/logger.js';
import type { CiAccessConfig } from './config.js';

// The ci_access block of an agent's config.yaml, as the server decides with it
// who may use the agent. Read at the configuration project's current commit
// (the caller says how to find it: a poller in the server, git in the CLI),
// or at the commit the caller names (the one a moved agent runs)
// with the server's one reader, which keeps it per commit, so a request costs
// no git call while nothing changed.
// A commit whose config.yaml does not validate leaves in force the block of
// the newest commit before it (first parents) whose config.yaml does, as the
// agent keeps its last good configuration (and as GitLab kept the
// authorizations of the last configuration it could parse): a typo pushed to
// the configuration project must not lock every CI job out of the cluster.
// The rule is the commit history's, not a process's memory, so the proxy (however
// long it has run) and `verdict kubeconfig` (a new process each time) decide
// alike. A config.yaml that is invalid since it was added, or is gone (no
// configuration, not a broken one), refuses with the error.

export interface AgentRef {
  name: string;
  config_project: string;
}

type Block = CiAccessConfig | undefined;

/** How far back the last good commit is looked for: further back than any run of broken commits a team pushes. */
const HISTORY_LIMIT = 100;
/** Invalid commits whose last good one is kept: a few per agent. */
const KEPT = 256;

export class CiAccessConfigs {
  /** The last good commit and block found for each invalid commit (per repo and agent); undefined when there is none. */
  private readonly lastGood = new Map<string, Promise<{ commit: string; block: Block } | undefined>>();
  /** The invalid commit each agent was last warned of: the warning is logged once per commit, not per request. */
  private readonly warned = new Map<string, string>();

  constructor(
    private readonly commitOf: (repo: string) => Promise<string>,
    private readonly log?: Logger,
  ) {}

  /**
   * The agent's ci_access block at the current commit, or at `at` (undefined when it has none), or that of the newest
   * earlier commit where config.yaml validates when it does not validate there; throws when it cannot be read, is
   * gone, or has no good commit.
   */
  async get(agent: AgentRef, at?: string): Promise<Block> {
    const commit = at ?? (await this.commitOf(agent.config_project));
    const read = await readAgentConfig(agent.config_project, agent.name, commit);
    if (read.state === 'valid') return read.config.ci_access as Block;
    // A deleted config.yaml (or agent directory) is no configuration, not an invalid one: it takes the access away.
    if (read.state === 'missing') throw read.error;
    const good = await this.lastGoodBefore(agent, commit);
    if (!good) throw read.error;
    if (this.warned.get(agent.name) !== commit) {
      this.warned.set(agent.name, commit);
      this.log?.warn(
        { agent_name: agent.name, commit_id: commit, error: read.error.message, last_good_commit_id: good.commit },
        'CI tunnel: invalid configuration; deciding with the ci_access block of the last good one',
      );
    }
    return good.block;
  }

  private lastGoodBefore(agent: AgentRef, commit: string): Promise<{ commit: string; block: Block } | undefined> {
    const key = JSON.stringify([agent.config_project, agent.name, commit]);
    let found = this.lastGood.get(key);
    if (!found) {
      found = findLastGood(agent, commit);
      // A git failure is not kept: the next request tries again.
      found.catch(() => this.lastGood.delete(key));
      this.lastGood.set(key, found);
      if (this.lastGood.size > KEPT) this.lastGood.delete(this.lastGood.keys().next().value as string);
    }
    return found;
  }
}

async function findLastGood(agent: AgentRef, commit: string): Promise<{ commit: string; block: Block } | undefined> {
  const out = (await git(agent.config_project, ['rev-list', '--first-parent', `--max-count=${HISTORY_LIMIT}`, commit])) as string;
  for (const c of out.split('\n').filter(Boolean).slice(1)) {
    const read = await readAgentConfig(agent.config_project, agent.name, c);
    if (read.state === 'valid') return { commit: c, block: read.config.ci_access as Block };
    // Before it was added there is no configuration to fall back to.
    if (read.state === 'missing') return undefined;
  }
  return undefined;
}
