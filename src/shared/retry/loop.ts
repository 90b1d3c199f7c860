import { Backoff, sleep, type BackoffOptions } from './backoff.js';

// The one retry loop of the project, as the original agent's single
// PollWithBackoff: every reconnect loop (Relay stream, config stream, alert
// publisher, module restarts, Kubernetes watch, Falco inputs, Kafka relaunch)
// runs its attempts through it, so backoff, reset on progress and abort work
// the same everywhere.

/** What to do after an attempt that did not throw: stop, run again at once, or back off first. */
export type AttemptOutcome = 'done' | 'now' | 'backoff';

export interface RetryOptions {
  /** Delays between attempts; a Backoff instance keeps its state across loops. */
  backoff: BackoffOptions | Backoff;
  signal: AbortSignal;
  /**
   * Called before each backoff sleep with the delay and the error the attempt
   * threw (undefined when it returned 'backoff'), so the caller logs in its own words.
   */
  onBackoff?: (delayMs: number, error: unknown) => void;
  /** How to wait a backoff delay (default: a timer the signal ends); a caller with news that makes waiting moot ends it early. */
  sleep?: (delayMs: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Runs `attempt` until it returns 'done' or the signal aborts. A thrown error
 * or 'backoff' waits the next backoff delay; 'now' runs again at once. The
 * attempt calls `progress()` when it got somewhere (a message arrived), which
 * starts the next failure's delay from the initial one again.
 */
export async function retryLoop(o: RetryOptions, attempt: (progress: () => void) => Promise<AttemptOutcome>): Promise<void> {
  const backoff = o.backoff instanceof Backoff ? o.backoff : new Backoff(o.backoff);
  const progress = () => backoff.reset();
  while (!o.signal.aborted) {
    let error: unknown;
    let outcome: AttemptOutcome;
    try {
      outcome = await attempt(progress);
    } catch (e) {
      error = e;
      outcome = 'backoff';
    }
    if (o.signal.aborted || outcome === 'done') return;
    if (outcome === 'now') continue;
    const delay = backoff.next();
    o.onBackoff?.(delay, error);
    await (o.sleep ?? sleep)(delay, o.signal);
  }
}
