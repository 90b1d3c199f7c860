// The one retry/backoff helper of the project: exponential with full jitter,
// the policy of the original agent (10 s -> 5 min, factor 2, reset after a
// healthy period). Every reconnect loop in agent and server uses it.

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor?: number;
  /** Full jitter: sleep a random time in [0, delay]. Tests turn it off. */
  jitter?: boolean;
  /** Reset to initialMs after this long without a failure. */
  resetAfterMs?: number;
  random?: () => number;
  now?: () => number;
}

export const AGENT_DEFAULT_BACKOFF: BackoffOptions = {
  initialMs: 10_000,
  maxMs: 5 * 60_000,
  factor: 2,
  jitter: true,
  resetAfterMs: 10 * 60_000,
};

export class Backoff {
  private attempt = 0;
  private lastFailure: number | undefined;
  constructor(private readonly opts: BackoffOptions) {
    if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs)) {
      throw new Error(`backoff bounds invalid: initial ${opts.initialMs} ms, max ${opts.maxMs} ms (need 0 < initial <= max)`);
    }
  }

  /** Delay before the next attempt, after a failure. */
  next(): number {
    const now = (this.opts.now ?? Date.now)();
    if (this.opts.resetAfterMs !== undefined && this.lastFailure !== undefined && now - this.lastFailure > this.opts.resetAfterMs) {
      this.attempt = 0;
    }
    this.lastFailure = now;
    const factor = this.opts.factor ?? 2;
    const raw = Math.min(this.opts.maxMs, this.opts.initialMs * factor ** this.attempt);
    if (raw < this.opts.maxMs) this.attempt++;
    if (this.opts.jitter === false) return raw;
    // Full jitter, but never below a tenth of the base so a tight loop cannot form.
    const r = (this.opts.random ?? Math.random)();
    return Math.max(this.opts.initialMs / 10, Math.floor(raw * r));
  }

  /** A success: the next failure starts from the initial delay again. */
  reset(): void {
    this.attempt = 0;
    this.lastFailure = undefined;
  }
}

/** Sleep that an AbortSignal cuts short; resolves false when aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

// Flags' durations share the config files' parser: one syntax everywhere.
export { parseDuration } from '../config/duration.js';
