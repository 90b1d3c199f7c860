import type { Consumer, EachBatchPayload } from 'kafkajs';
import type { Logger } from '../../shared/log/logger.js';
import { retryLoop } from '../../shared/retry/loop.js';

// kafkajs restarts its consumers after retriable failures; this covers the
// rest (e.g. brokers gone for longer than its retries): disconnect, wait with
// the project's backoff, launch again, until it works or the owner stops.

export interface Relaunchable {
  /** What runs, for the logs: "the alert log reader". */
  what: string;
  log: Logger;
  /** Aborted when the owner stops. */
  signal: AbortSignal;
  disconnect(): Promise<void>;
  launch(): Promise<void>;
  explain(e: unknown): string;
}

export async function relaunchUntilRunning(r: Relaunchable): Promise<void> {
  // The consumer just failed: the first relaunch waits like any retry, so brokers that are down are not hammered.
  let failedNow = true;
  await retryLoop(
    {
      backoff: { initialMs: 5_000, maxMs: 60_000 },
      signal: r.signal,
      onBackoff: (_delay, e) => {
        if (e !== undefined) r.log.error({ error: r.explain(e) }, `Kafka: could not restart ${r.what}; trying again with backoff`);
      },
    },
    async () => {
      await r.disconnect().catch(() => undefined);
      if (failedNow) {
        failedNow = false;
        return 'backoff';
      }
      await r.launch();
      r.log.info({}, `Kafka: ${r.what} is running again`);
      return 'done';
    },
  );
}

/**
 * Runs a consumer, and throws what stopped it for good while it started.
 * kafkajs reports a join the brokers refuse (a session timeout outside the
 * brokers' range, a group ACL) only as a CRASH event, and its run() resolves
 * anyway: the server would start with a reader that never reads. A crash
 * kafkajs does not restart from after start-up goes to `failedLater` (the
 * caller relaunches).
 */
export async function runOrThrow(consumer: Consumer, run: () => Promise<void>, failedLater: () => void): Promise<void> {
  let started = false;
  let failed: unknown;
  consumer.on(consumer.events.CRASH, (e) => {
    if (e.payload.restart) return;
    if (started) failedLater();
    else failed = e.payload.error;
  });
  try {
    await run();
  } finally {
    started = true;
  }
  if (failed !== undefined) {
    await consumer.disconnect().catch(() => undefined);
    throw failed;
  }
}

/**
 * Tests hold a consumer's batches back (to widen a crash window) with a promise;
 * the consumer keeps its group membership meanwhile. False when the batch is
 * no longer this consumer's to handle.
 */
export async function waitWhileHeld(hold: Promise<void> | undefined, b: Pick<EachBatchPayload, 'heartbeat' | 'isRunning' | 'isStale'>): Promise<boolean> {
  if (!hold) return true;
  let held = true;
  void hold.then(() => (held = false));
  while (held) {
    await Promise.race([hold, new Promise((r) => setTimeout(r, 500))]);
    if (!b.isRunning() || b.isStale()) return false;
    await b.heartbeat();
  }
  return true;
}
