import { describe, expect, it } from 'vitest';
import { RateLimiter } from './rate-limit.js';

describe('RateLimiter', () => {
  it('allows a burst, then refills at the rate', () => {
    let now = 0;
    const l = new RateLimiter({ burst: 3, perSecond: 1 }, () => now);
    expect([l.take('a'), l.take('a'), l.take('a'), l.take('a')]).toEqual([true, true, true, false]);
    expect(l.take('b')).toBe(true); // keys are independent
    expect(l.retryAfter('a')).toBe(1);
    now = 1000;
    expect(l.take('a')).toBe(true);
    expect(l.take('a')).toBe(false);
    now = 100_000;
    expect([l.take('a'), l.take('a'), l.take('a'), l.take('a')]).toEqual([true, true, true, false]);
  });
  it('describes itself for error messages', () => {
    expect(new RateLimiter({ burst: 20, perSecond: 1 / 3 }).describe()).toBe('20 at once, then 1 every 3 s');
    expect(new RateLimiter({ burst: 60, perSecond: 1 }).describe()).toBe('60 at once, then 1 per second');
  });
});
