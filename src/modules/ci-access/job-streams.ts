import { errText, type Logger } from '../../shared/log/logger.js';
import type { JobTokens } from './job-tokens.js';

// Ends the open requests of CI job tokens revoked or expired since they began:
// watches, logs -f, exec and port-forward hold a request open for as long as
// the job likes, and a token is checked only when a request begins. The
// database is read once a second while requests are open, as the agent
// tokens' RevocationWatcher does: `verdict ci-tokens revoke` (another process
// on the same SQLite file), the admin API, and with Kafka a revocation on
// another replica (replica-sync.ts writes it into this database) all land there.

export type EndRequest = (message: string) => void;

export class OpenJobRequests {
  private readonly open = new Map<number, Set<EndRequest>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly jobs: JobTokens,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {}

  /** Registers an open request of a job; `end` is called once if its token stops being valid. Returns the unregister. */
  add(jobId: number, end: EndRequest): () => void {
    let set = this.open.get(jobId);
    if (!set) this.open.set(jobId, (set = new Set()));
    set.add(end);
    this.timer ??= setInterval(() => this.check(), this.intervalMs).unref();
    return () => this.remove(jobId, end);
  }

  private remove(jobId: number, end: EndRequest): void {
    const set = this.open.get(jobId);
    if (!set?.delete(end)) return;
    if (set.size) return;
    this.open.delete(jobId);
    if (this.open.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Ends the requests of tokens no longer valid; returns how many. */
  check(now = Date.now()): number {
    if (this.open.size === 0) return 0;
    let ended = 0;
    let why: Map<number, string>;
    try {
      why = this.jobs.invalidAmong([...this.open.keys()], now);
    } catch (e) {
      // A timer: a busy database must not take the server down. Checked again at the next tick.
      this.log.error({ error: errText(e) }, 'CI tunnel: could not check for revoked or expired job tokens; will try again');
      return 0;
    }
    for (const [jobId, message] of why) {
      const set = this.open.get(jobId);
      if (!set) continue;
      const ends = [...set];
      for (const end of ends) {
        this.remove(jobId, end);
        end(message);
      }
      ended += ends.length;
      this.log.warn({ ci_job_id: jobId, requests: ends.length, reason: message }, 'CI tunnel: job token revoked or expired: ended its open requests');
    }
    return ended;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
