import type { IncomingEvent } from '../store/alert-store.js';

/**
 * Where the tunnel hands alert batches. The agent is acknowledged only after
 * accept() resolves, so an implementation resolves only when the batch is
 * durable: committed to SQLite, or produced to Kafka when the server scales out.
 * A stream's batches are handed over in order, each once the one before it
 * resolved; a `pipelined` sink gets each as it comes (acknowledgements still
 * go out in order).
 */
export interface AlertSink {
  accept(agent: string, events: IncomingEvent[]): Promise<{ stored: number; duplicates: number }>;
  /** Takes a stream's next batch before the one before it resolved (it keeps their order itself). */
  readonly pipelined?: boolean;
}
