// A failure that repeats on every attempt (a full disk, a misconfigured
// sender) must not flood the log: its line goes out at most once per interval,
// saying how many were held back meanwhile.

export class LogThrottle {
  private last = -Infinity;
  private held = 0;

  constructor(
    private readonly intervalMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** How many lines were held back since the last one let through; undefined: hold this one back. */
  pass(): number | undefined {
    const t = this.now();
    if (t - this.last < this.intervalMs) {
      this.held++;
      return undefined;
    }
    this.last = t;
    const held = this.held;
    this.held = 0;
    return held;
  }
}
