// Token buckets keyed by agent token, peer address or anything else. A bucket
// holds `burst` attempts and refills at `perSecond`; a key whose bucket is full
// again is forgotten, so memory stays bounded by the keys active recently.

export interface RateLimit {
  burst: number;
  perSecond: number;
}

/** Attempts allowed per agent token: room for restarts and config errors, not for a crash loop or a leaked token in many places. */
export const TOKEN_LIMIT: RateLimit = { burst: 60, perSecond: 1 };
/** Failed authentications allowed per peer (or per unknown token when the peer is not known). */
export const FAILURE_LIMIT: RateLimit = { burst: 20, perSecond: 1 / 3 };
/** WebSocket upgrades allowed per client address (one per agent connection). */
export const UPGRADE_LIMIT: RateLimit = { burst: 60, perSecond: 2 };

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private sweeps = 0;

  constructor(
    readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one attempt for key; false when the bucket is empty. */
  take(key: string): boolean {
    const now = this.now();
    if (++this.sweeps % 1000 === 0) this.sweep(now);
    const b = this.buckets.get(key) ?? { tokens: this.limit.burst, at: now };
    b.tokens = Math.min(this.limit.burst, b.tokens + ((now - b.at) / 1000) * this.limit.perSecond);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    return true;
  }

  /** Seconds until key may try again. */
  retryAfter(key: string): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    return Math.max(0, Math.ceil((1 - b.tokens) / this.limit.perSecond));
  }

  describe(): string {
    const per = this.limit.perSecond >= 1 ? `${this.limit.perSecond} per second` : `1 every ${Math.round(1 / this.limit.perSecond)} s`;
    return `${this.limit.burst} at once, then ${per}`;
  }

  private sweep(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.limit.perSecond >= this.limit.burst) this.buckets.delete(k);
    }
  }
}
