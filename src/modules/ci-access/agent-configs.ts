import { loadAgentConfiguration } from '../../server/config/agent-config-loader.js';
import type { CiAccessConfig } from './config.js';

// The ci_access block of an agent's config.yaml, as the server decides with it
// who may use the agent. Read at the configuration project's current commit
// (the caller says how to find it: a poller in the server, git in the CLI) and
// kept per commit, so a request costs no git call while nothing changed.

export interface AgentRef {
  name: string;
  config_project: string;
}

interface Entry {
  repo: string;
  commit: string;
  block: Promise<CiAccessConfig | undefined>;
}

export class CiAccessConfigs {
  private readonly byAgent = new Map<string, Entry>();

  constructor(private readonly commitOf: (repo: string) => Promise<string>) {}

  /** The agent's ci_access block at the current commit (undefined when it has none); throws when config.yaml cannot be read or is invalid. */
  async get(agent: AgentRef): Promise<CiAccessConfig | undefined> {
    const commit = await this.commitOf(agent.config_project);
    const e = this.byAgent.get(agent.name);
    if (e && e.commit === commit && e.repo === agent.config_project) return e.block;
    const block = loadAgentConfiguration(agent.config_project, agent.name, commit).then((l) => l.config.ci_access as CiAccessConfig | undefined);
    // A failed read is not kept: the next request tries again.
    block.catch(() => {
      if (this.byAgent.get(agent.name)?.block === block) this.byAgent.delete(agent.name);
    });
    this.byAgent.set(agent.name, { repo: agent.config_project, commit, block });
    return block;
  }
}
