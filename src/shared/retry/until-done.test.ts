import { describe, expect, it } from 'vitest';
import { retryUntilDone } from './until-done.js';

const fast = { initialMs: 5, maxMs: 40, jitter: false };

describe('retryUntilDone', () => {
  it("tries in the caller's turn, then with backoff until the work is done", async () => {
    let n = 0;
    const delays: number[] = [];
    const p = retryUntilDone({ backoff: fast, signal: new AbortController().signal, onBackoff: (d) => delays.push(d) }, () => {
      n++;
      if (n < 3) throw new Error('disk full');
      return 'stored';
    });
    expect(n).toBe(1); // the first try did not wait for a later turn
    expect(await p).toEqual({ done: true, value: 'stored', failures: 2 });
    expect(delays).toEqual([5, 10]);
  });

  it('tries once more when the signal aborts during a wait, then gives up with the error', async () => {
    const ac = new AbortController();
    let n = 0;
    const p = retryUntilDone({ backoff: { initialMs: 60_000, maxMs: 60_000, jitter: false }, signal: ac.signal }, () => {
      n++;
      throw new Error(`fail ${n}`);
    });
    setTimeout(() => ac.abort(), 10);
    const r = await p;
    expect(n).toBe(2);
    expect(r.done).toBe(false);
    expect(r.done === false && (r.error as Error).message).toBe('fail 2');
  });

  it('succeeds on the last try after the abort', async () => {
    const ac = new AbortController();
    let n = 0;
    const p = retryUntilDone({ backoff: { initialMs: 60_000, maxMs: 60_000, jitter: false }, signal: ac.signal }, () => {
      if (++n === 1) throw new Error('busy');
      return n;
    });
    ac.abort();
    expect(await p).toEqual({ done: true, value: 2, failures: 1 });
  });
});
