import type { IncomingEvent } from '../store/alert-store.js';

/**
 * Where the tunnel hands alert batches. The agent is acknowledged only after
 * accept() resolves, so an implementation resolves only when the batch is
 * durable: committed to SQLite, or produced to Kafka when the server scales out.
 */
export interface AlertSink {
  accept(agent: string, events: IncomingEvent[]): Promise<{ stored: number; duplicates: number }>;
}
