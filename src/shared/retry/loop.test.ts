import { describe, expect, it } from 'vitest';
import { retryLoop, type AttemptOutcome } from './loop.js';

const fast = { initialMs: 5, maxMs: 40, jitter: false };

describe('retryLoop', () => {
  it('backs off after failures, doubling, and stops on done', async () => {
    const delays: number[] = [];
    const errors: unknown[] = [];
    let n = 0;
    await retryLoop(
      {
        backoff: fast,
        signal: new AbortController().signal,
        onBackoff: (d, e) => {
          delays.push(d);
          errors.push(e);
        },
      },
      async () => {
        n++;
        if (n <= 3) throw new Error(`fail ${n}`);
        return 'done';
      },
    );
    expect(n).toBe(4);
    expect(delays).toEqual([5, 10, 20]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['fail 1', 'fail 2', 'fail 3']);
  });

  it('runs again at once on "now" and resets the delay on progress', async () => {
    const delays: number[] = [];
    const plan: (AttemptOutcome | 'progress')[] = ['backoff', 'backoff', 'now', 'progress', 'backoff', 'done'];
    let i = 0;
    await retryLoop({ backoff: fast, signal: new AbortController().signal, onBackoff: (d) => delays.push(d) }, async (progress) => {
      const step = plan[i++]!;
      if (step === 'progress') {
        progress();
        return 'backoff';
      }
      return step;
    });
    expect(delays).toEqual([5, 10, 5, 10]);
  });

  it('ends while sleeping when the signal aborts', async () => {
    const abort = new AbortController();
    let n = 0;
    const done = retryLoop({ backoff: { initialMs: 60_000, maxMs: 60_000, jitter: false }, signal: abort.signal }, async () => {
      n++;
      return 'backoff';
    });
    await new Promise((r) => setTimeout(r, 20));
    abort.abort();
    await done;
    expect(n).toBe(1);
  });

  it('waits a backoff delay with the sleep it is given, which may end it early', async () => {
    const abort = new AbortController();
    const waits: number[] = [];
    let n = 0;
    await retryLoop(
      {
        backoff: { initialMs: 60_000, maxMs: 60_000, jitter: false },
        signal: abort.signal,
        sleep: async (ms) => {
          waits.push(ms);
        },
      },
      async () => (++n < 3 ? 'backoff' : 'done'),
    );
    expect(n).toBe(3);
    expect(waits).toEqual([60_000, 60_000]);
  });
});
