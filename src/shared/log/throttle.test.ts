import { describe, expect, it } from 'vitest';
import { LogThrottle } from './throttle.js';

describe('LogThrottle', () => {
  it('lets one line through per interval and says how many it held back', () => {
    let now = 1_000;
    const t = new LogThrottle(60_000, () => now);
    expect(t.pass()).toBe(0);
    now += 59_999;
    expect(t.pass()).toBeUndefined();
    expect(t.pass()).toBeUndefined();
    now += 1;
    expect(t.pass()).toBe(2);
    expect(t.pass()).toBeUndefined();
  });
});
