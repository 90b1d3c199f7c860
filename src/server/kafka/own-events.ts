import type { IncomingEvent } from '../store/alert-store.js';

/** Bytes of message values kept at most (the parsed events take about as much again, or more): a projection far behind its own producer parses the rest like anyone else's; a second or more of events at 10,000/s fits. */
const MAX_BYTES = 16 * 1024 * 1024;

interface Kept {
  value: Buffer;
  agent: string;
  events: IncomingEvent[];
}

/** An `events` message of this replica's that the brokers acknowledged, with the events as it parsed them. */
export interface AppendedEvents {
  partition: number;
  offset: number;
  agent: string;
  events: IncomingEvent[];
}

/**
 * Projects messages at the offsets the brokers gave them, when it can do so
 * in log order; returns those of `appended` it projected (a prefix of
 * each partition's messages, the rest left to the log).
 */
type ApplyAppended = (appended: readonly AppendedEvents[]) => ReadonlySet<AppendedEvents>;

/**
 * The `events` messages this replica produced, with their events as it had
 * them parsed, until its projection has them. Parsing them again would cost
 * about as much as storing them, and every event a replica accepts comes
 * back to it. Two ways out:
 * - once the brokers acknowledge a message, the projection may apply it at
 *   once, if it is the next message of its partition to project (appended);
 * - otherwise the projection reads it back from the log, and takes it when
 *   the value read is byte for byte the one kept, so what is projected is
 *   exactly what the log holds, as on every other replica; anything else
 *   (another replica's message, a value that was evicted or differs) is
 *   parsed from the log.
 * Kept by the message's `verdict-ref` (its event ids), not by offset, so a
 * message the projection reads before its produce is acknowledged is found too.
 */
export class OwnEvents {
  private readonly kept = new Map<string, Kept>();
  private bytes = 0;
  private apply: ApplyAppended | undefined;

  /** The projection's way to apply acknowledged messages directly. */
  onAppended(apply: ApplyAppended): void {
    this.apply = apply;
  }

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

  /**
   * The brokers acknowledged these messages at these offsets: those the
   * projection applies now are forgotten; the others wait for it to read them.
   */
  appended(acked: readonly { ref: string; value: Buffer; partition: number; offset: number }[]): void {
    if (!this.apply) return;
    const refs = new Map<AppendedEvents, string>();
    for (const a of acked) {
      const k = this.kept.get(a.ref);
      // Taken by the projection already (it read the log first), evicted, or
      // replaced by a resend of the same events (another `at`), which has its own offset.
      if (!k || k.value !== a.value || a.offset < 0) continue;
      refs.set({ partition: a.partition, offset: a.offset, agent: k.agent, events: k.events }, a.ref);
    }
    if (!refs.size) return;
    for (const done of this.apply([...refs.keys()])) this.drop(refs.get(done)!);
  }

  /** The events of the message with `ref`, if `value` is the one kept; forgotten either way. */
  take(ref: string, value: Buffer): { agent: string; events: IncomingEvent[] } | undefined {
    const k = this.kept.get(ref);
    if (!k) return undefined;
    this.kept.delete(ref);
    this.bytes -= k.value.length;
    return k.value.equals(value) ? k : undefined;
  }

  /** Forgets a message that was not produced (the append failed), or one projected; if it was produced after all, it is parsed. */
  drop(ref: string): void {
    const k = this.kept.get(ref);
    if (!k) return;
    this.kept.delete(ref);
    this.bytes -= k.value.length;
  }
}
