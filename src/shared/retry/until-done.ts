import { retryLoop, type RetryOptions } from './loop.js';

// Work that must not be dropped once begun, such as storing events a sender
// will never send again (Falco's pipe and gRPC output): tried until it works,
// with backoff, through the project's one retry loop. When the signal aborts
// (the input stops) the wait is cut short and the work is tried once more, as
// the last chance before it is given up.

export type Done<T> = { done: true; value: T; failures: number } | { done: false; error: unknown; failures: number };

/** Runs `attempt` until it returns; the first attempt runs synchronously, in the caller's turn. */
export async function retryUntilDone<T>(o: RetryOptions, attempt: () => T | Promise<T>): Promise<Done<T>> {
  let failures = 0;
  let result: { value: T } | undefined;
  await retryLoop(o, async () => {
    try {
      result = { value: await attempt() };
    } catch (e) {
      failures++;
      throw e;
    }
    return 'done';
  });
  if (result) return { done: true, value: result.value, failures };
  try {
    return { done: true, value: await attempt(), failures };
  } catch (error) {
    return { done: false, error, failures: failures + 1 };
  }
}
