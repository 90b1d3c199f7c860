import { EventEmitter } from 'node:events';
import { errText, type Logger } from '../../shared/log/logger.js';
import { headCommit } from './git-project.js';

/**
 * Polls the default branch of one configuration project. Every agent streaming
 * its configuration from the project shares the poller, so N agents cost one
 * `git rev-parse` per interval, not N.
 */
export class ProjectPoller extends EventEmitter<{ commit: [string] }> {
  private commit: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private users = 0;
  private lastError = '';
  private lastCheck = 0;

  constructor(
    readonly repo: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {
    super();
  }

  /**
   * The current commit. Checks now when the last check is older than the
   * interval: with no stream open the timer is off, and an agent that
   * reconnects must not be handed a stale commit.
   */
  async current(): Promise<string> {
    if (this.commit === undefined || Date.now() - this.lastCheck >= this.intervalMs) await this.check();
    if (this.commit === undefined) throw new Error(this.lastError);
    return this.commit;
  }

  acquire(): () => void {
    if (this.users++ === 0) {
      this.timer = setInterval(() => void this.check(), this.intervalMs);
      this.timer.unref();
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.users === 0 && this.timer) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    };
  }

  async check(): Promise<void> {
    this.lastCheck = Date.now();
    try {
      const c = await headCommit(this.repo);
      this.lastError = '';
      if (c !== this.commit) {
        this.commit = c;
        this.log.info({ project: this.repo, commit_id: c }, 'Config: new commit');
        this.emit('commit', c);
      }
    } catch (e) {
      const msg = errText(e);
      if (msg !== this.lastError) this.log.error({ project: this.repo, error: msg }, 'Config: failed to read the configuration project');
      this.lastError = msg;
    }
  }
}

export class ProjectPollers {
  private readonly pollers = new Map<string, ProjectPoller>();
  constructor(
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  get(repo: string): ProjectPoller {
    let p = this.pollers.get(repo);
    if (!p) {
      p = new ProjectPoller(repo, this.intervalMs, this.log);
      this.pollers.set(repo, p);
    }
    return p;
  }
}
