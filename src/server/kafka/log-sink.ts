import { Counter } from 'prom-client';
import { losesStored } from '../../shared/alert/fit.js';
import type { Logger } from '../../shared/log/logger.js';
import { kafkaRegistry } from './metrics.js';
import type { IncomingEvent } from '../store/alert-store.js';
import type { AlertSink } from '../tunnel/alert-sink.js';
import {
  encodeAlertEvent,
  encodeEntry,
  encodeEventsMessage,
  ENVELOPE_BYTES,
  HEADER_REF,
  HEADER_TYPE,
  logKey,
  MAX_MESSAGE_BYTES,
  type Entry,
  type EventCut,
} from './messages.js';
import type { OwnEvents } from './own-events.js';
import type { Appended, LogWriter, OutMessage } from './producer.js';

const writtenCut = new Counter({
  name: 'verdict_kafka_events_cut_total',
  help: 'Agent events written to the log cut to fit the Kafka message size, without their samples or with part of their details (each marked where it was), once per event and server process',
  registers: [kafkaRegistry],
});
const tooBig = new Counter({
  name: 'verdict_kafka_events_too_large_total',
  help: 'Agent events dropped because they exceed the Kafka message size even cut as far as they go: fields as the store keeps them, no samples, details cut; once per event and server process',
  registers: [kafkaRegistry],
});

/**
 * How many cut or dropped event ids a sink remembers, so that an agent's
 * resend of an unacknowledged batch (after a reconnect or a Kafka outage) is
 * not warned about and counted again. Bounded because the sink never learns
 * that the agent got the acknowledgement, so no id could ever be forgotten
 * for sure, and a replica runs for months; a few thousand is plenty, since
 * only the rare events too big for a message are remembered and an agent
 * resends at most its batches in flight.
 */
const REMEMBERED_IDS = 4096;

/**
 * The tunnel's sink when the server scales out: a batch is acknowledged to
 * the agent once Kafka has it (acks=all), not once this replica stored it.
 * Every replica, this one included, stores it by projecting the log; a batch
 * the agent sends twice is in the log twice and stored once (event ids).
 * So `stored` here counts events appended to the log, and `duplicates` is 0:
 * only the projection can tell (verdict_kafka_projected_events_total).
 *
 * A batch goes to the log as one `events` message per partition its events
 * fall in (more when that would exceed the message size), each event in the
 * partition of its agent/fingerprint key, so an alert's events keep one
 * partition and their order. This replica keeps the parsed events of each
 * message (OwnEvents) for its own projection, which applies them once the
 * brokers acknowledge them when nothing else is before them in the log.
 */
export class KafkaAlertSink implements AlertSink {
  /** Batches are appended in the order they come (LogWriter keeps it per partition), several in flight. */
  readonly pipelined = true;
  /** Ids of the events warned about as cut or dropped, oldest first, so that a resend is not warned about or counted again. */
  private readonly reported = new Set<string>();

  constructor(
    private readonly writer: LogWriter,
    private readonly topic: string,
    private readonly replica: string,
    private readonly log: Logger,
    private readonly own?: OwnEvents | undefined,
  ) {}

  async accept(agent: string, events: IncomingEvent[]): Promise<{ stored: number; duplicates: number }> {
    const at = new Date().toISOString();
    const receivedAt = Date.parse(at);
    const messages: OutMessage[] = [];
    const kept: { ref: string; value: Buffer; index: number }[] = [];
    let count = 0;
    const open = new Map<number, Building>();
    const close = (partition: number, b: Building) => {
      const value = encodeEventsMessage(agent, at, this.replica, b.entries);
      const ref = b.ids.join(',');
      messages.push({ topic: this.topic, partition, key: agent, value, headers: { [HEADER_TYPE]: 'events', [HEADER_REF]: ref } });
      if (this.own) {
        this.own.keep(ref, value, agent, b.parsed);
        kept.push({ ref, value, index: messages.length - 1 });
      }
    };
    for (const ev of events) {
      const key = logKey(agent, ev.payload.fingerprint);
      const partition = this.writer.partitionOf(this.topic, key);
      const entry = partition === undefined ? undefined : encodeEntry(ev.id, ev.payload, ev.text);
      if (partition === undefined || entry === undefined) {
        const single = partition === undefined ? encodeAlertEvent(agent, ev.id, ev.payload, this.replica, at) : undefined;
        if (single === undefined) {
          this.dropped(agent, ev);
          continue;
        }
        if (single.cut) this.cut(agent, ev, single.cut);
        // Partitions not known yet: one event per message, placed by its key.
        messages.push({ topic: this.topic, key, value: single.json, headers: { [HEADER_TYPE]: 'alert', [HEADER_REF]: ev.id } });
        count++;
        continue;
      }
      if (entry.cut) this.cut(agent, ev, entry.cut);
      const bytes = entry.bytes + 1;
      let b = open.get(partition);
      if (b && b.bytes + bytes > MAX_MESSAGE_BYTES - ENVELOPE_BYTES) {
        close(partition, b);
        b = undefined;
      }
      if (!b) open.set(partition, (b = { entries: [], ids: [], parsed: [], bytes: 0 }));
      b.entries.push(entry);
      b.ids.push(ev.id);
      b.parsed.push({ id: ev.id, payload: entry.payload, receivedAt });
      b.bytes += bytes;
      count++;
    }
    for (const [partition, b] of open) close(partition, b);
    let appended: Appended[];
    try {
      appended = await this.writer.append(messages);
    } catch (e) {
      for (const { ref } of kept) this.own?.drop(ref);
      // The agent reads this too, and its own hints key on errno names: ECONNREFUSED
      // here would make it blame its --kas-address, which answered fine.
      throw new Error(
        `the alert log in Kafka is unavailable, so the batch is not acknowledged: ${(e as Error).message.replace(/\bconnect ECONNREFUSED\b/g, 'connection refused to').replace(/\bE(CONNRESET|TIMEDOUT|HOSTUNREACH|NOTFOUND)\b/g, (m) => m.slice(1).toLowerCase())}`,
      );
    }
    if (this.own && kept.length) {
      this.own.appended(kept.map(({ ref, value, index }) => ({ ref, value, partition: appended[index]!.partition, offset: appended[index]!.offset })));
    }
    return { stored: count, duplicates: 0 };
  }

  /** True the first time an event id is reported (for the last REMEMBERED_IDS ids). */
  private firstReport(id: string): boolean {
    if (this.reported.has(id)) return false;
    if (this.reported.size >= REMEMBERED_IDS) this.reported.delete(this.reported.values().next().value as string);
    this.reported.add(id);
    return true;
  }

  private dropped(agent: string, ev: IncomingEvent): void {
    if (!this.firstReport(ev.id)) return;
    // Refusing it would make the agent send it forever and block its spool.
    tooBig.inc();
    this.log.error(
      { agent_name: agent, alert_id: ev.id, title: ev.payload.title.slice(0, 200) },
      "Kafka: dropped an alert event larger than the Kafka message size (900 KiB) even cut as far as it goes (fields as the store keeps them, no samples, details cut): what is too big is a field never cut (its rule, namespace, policies or labels' names); fix what makes such alerts at the source",
    );
  }

  /** Warns about an event written cut when that lost something the store would have kept. */
  private cut(agent: string, ev: IncomingEvent, c: EventCut): void {
    if (!losesStored(c.steps, c.details)) return;
    if (!this.firstReport(ev.id)) return;
    writtenCut.inc();
    this.log.warn(
      {
        agent_name: agent,
        alert_id: ev.id,
        title: ev.payload.title.slice(0, 200),
        cut: c.steps,
        ...(c.details.length > 0 && { cut_details: c.details.slice(0, 20), cut_details_count: c.details.length }),
      },
      "Kafka: wrote an alert event larger than the Kafka message size (900 KiB) cut to fit, without its samples or with part of its details (each marked where it was cut). To have such events stored whole, shorten their big field at the source, usually the Falco rule's output or one of its output fields",
    );
  }
}

/** An `events` message being filled for one partition. */
interface Building {
  entries: Entry[];
  ids: string[];
  parsed: IncomingEvent[];
  /** UTF-8 bytes of the entries and their commas. */
  bytes: number;
}
