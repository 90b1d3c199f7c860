import type { Logger } from '../../shared/log/logger.js';
import { Backoff, sleep } from '../../shared/retry/backoff.js';

// kafkajs restarts its consumers after retriable failures; this covers the
// rest (e.g. brokers gone for longer than its retries): disconnect, wait with
// the project's backoff, launch again, until it works or the owner stops.

export interface Relaunchable {
  /** What runs, for the logs: "the alert log reader". */
  what: string;
  log: Logger;
  stopped(): boolean;
  disconnect(): Promise<void>;
  launch(): Promise<void>;
  explain(e: unknown): string;
}

export async function relaunchUntilRunning(r: Relaunchable, backoff = new Backoff({ initialMs: 5_000, maxMs: 60_000 })): Promise<void> {
  while (!r.stopped()) {
    await sleep(backoff.next());
    if (r.stopped()) return;
    await r.disconnect().catch(() => undefined);
    if (r.stopped()) return;
    try {
      await r.launch();
      r.log.info({}, `Kafka: ${r.what} is running again`);
      return;
    } catch (e) {
      r.log.error({ error: r.explain(e) }, `Kafka: could not restart ${r.what}; trying again with backoff`);
    }
  }
}
