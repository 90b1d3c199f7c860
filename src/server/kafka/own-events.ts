import type { IncomingEvent } from '../store/alert-store.js';

/** Bytes of message values kept at most (the parsed events take about as much again, or more): a projection far behind its own producer parses the rest like anyone else's; a second or more of events at 10,000/s fits. */
const MAX_BYTES = 16 * 1024 * 1024;

interface Kept {
  value: Buffer;
  agent: string;
  events: IncomingEvent[];
}

/**
 * The `events` messages this replica produced, with their events as it had
 * them parsed, until its projection reads them back. Parsing them again
 * would cost about as much as storing them, and every event a replica
 * accepts comes back to it. A message is taken only when the value read from
 * the log is byte for byte the one kept, so what is projected is exactly what
 * the log holds, as on every other replica; anything else (another replica's
 * message, a value that was evicted or differs) is parsed from the log.
 * Kept by the message's `verdict-ref` (its event ids), not by offset, so a
 * message the projection reads before its produce is acknowledged is found too.
 */
export class OwnEvents {
  private readonly kept = new Map<string, Kept>();
  private bytes = 0;

  keep(ref: string, value: Buffer, agent: string, events: IncomingEvent[]): void {
    this.drop(ref);
    this.kept.set(ref, { value, agent, events });
    this.bytes += value.length;
    // Oldest first (Map order): those are the ones the projection has most likely read already, or never will.
    for (const [k, v] of this.kept) {
      if (this.bytes <= MAX_BYTES) break;
      this.kept.delete(k);
      this.bytes -= v.value.length;
    }
  }

  /** The events of the message with `ref`, if `value` is the one kept; forgotten either way. */
  take(ref: string, value: Buffer): { agent: string; events: IncomingEvent[] } | undefined {
    const k = this.kept.get(ref);
    if (!k) return undefined;
    this.kept.delete(ref);
    this.bytes -= k.value.length;
    return k.value.equals(value) ? k : undefined;
  }

  /** Forgets a message that was not produced (the append failed); if it was after all, it is parsed. */
  drop(ref: string): void {
    const k = this.kept.get(ref);
    if (!k) return;
    this.kept.delete(ref);
    this.bytes -= k.value.length;
  }
}
