import { errText, type Logger } from '../../shared/log/logger.js';
import type { AgentRegistry } from './agent-registry.js';

export interface StreamDropper {
  tokenIds(): number[];
  drop(tokenId: number): number;
}

/**
 * Ends the open streams of tokens revoked by another process (the CLI writes
 * the same SQLite file). New calls are refused at once because every call
 * authenticates against the database; this closes the streams already open.
 * Each tick reads one row unless a revocation happened.
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

  /** Drops the streams of revoked tokens; returns how many streams. */
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
    } catch (e) {
      this.log.error({ error: errText(e) }, 'Could not check for revoked agent tokens; will try again');
    }
    return dropped;
  }
}
