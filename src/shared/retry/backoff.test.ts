import { describe, expect, it } from 'vitest';
import { Backoff, parseDuration } from './backoff.js';

describe('Backoff', () => {
  it('doubles up to the maximum without jitter', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, jitter: false });
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([100, 200, 400, 800, 1000, 1000]);
    b.reset();
    expect(b.next()).toBe(100);
  });
  it('applies full jitter within [initial/10, delay]', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.5 });
    expect(b.next()).toBe(50);
    expect(b.next()).toBe(100);
    const z = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
    expect(z.next()).toBe(10);
  });
  it('resets after a healthy period', () => {
    let now = 0;
    const b = new Backoff({ initialMs: 10, maxMs: 100, jitter: false, resetAfterMs: 1000, now: () => now });
    b.next();
    b.next();
    now = 5000;
    expect(b.next()).toBe(10);
  });
  it('rejects bad bounds', () => {
    expect(() => new Backoff({ initialMs: 0, maxMs: 10 })).toThrow(/backoff bounds invalid/);
  });
  it('parses durations', () => {
    expect(parseDuration('10s', 'x')).toBe(10_000);
    expect(parseDuration('250ms', 'x')).toBe(250);
    expect(parseDuration('5m', 'x')).toBe(300_000);
    expect(() => parseDuration('ten', 'poll')).toThrow(/poll: "ten" is not a duration/);
  });
});
