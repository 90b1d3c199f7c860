import { errText, type Logger } from '../../shared/log/logger.js';
import type { AgentRegistry } from './agent-registry.js';

export interface StreamDropper {
  tokenIds(): number[];
  drop(tokenId: number): number;
  configStreamAgents(): string[];
  endConfigStreams(agent: string, project: string): number;
}

/**
 * Ends the open streams that a change made by another process makes stale (the
 * CLI writes the same SQLite file; with Kafka, the tokens topic brings other
 * replicas' changes): those of revoked tokens, and the configuration streams of
 * an agent moved to another configuration project, which the agent opens again
 * at once and is then served from the new project. New calls see the change at
 * once because every call reads the database; this handles the streams already
 * open. Each tick reads one row unless something changed.
 */
export class RevocationWatcher {
  private timer: NodeJS.Timeout | undefined;
  private seen: number;

  constructor(
    private readonly agents: AgentRegistry,
    private readonly streams: StreamDropper,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {
    this.seen = agents.revision();
  }

  start(): void {
    this.timer = setInterval(() => this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Ends the streams of revoked tokens and moved agents' configuration streams; returns how many streams. */
  check(): number {
    let dropped = 0;
    try {
      const rev = this.agents.revision();
      if (rev === this.seen) return 0;
      this.seen = rev;
      for (const id of this.agents.revokedAmong(this.streams.tokenIds())) {
        const n = this.streams.drop(id);
        dropped += n;
        this.log.warn({ token_id: id, streams: n }, 'Agent token revoked: closed its open streams');
      }
      for (const name of this.streams.configStreamAgents()) {
        const project = this.agents.get(name)?.config_project;
        const n = project === undefined ? 0 : this.streams.endConfigStreams(name, project);
        if (n) this.log.info({ agent_name: name, config_project: project, streams: n }, 'Agents: ended configuration streams of the old configuration project');
        dropped += n;
      }
    } catch (e) {
      this.log.error({ error: errText(e) }, 'Could not check for revoked agent tokens or moved agents; will try again');
    }
    return dropped;
  }
}
