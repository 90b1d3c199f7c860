import { Counter } from 'prom-client';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import type { IncomingEvent } from '../store/alert-store.js';
import type { AlertSink } from '../tunnel/alert-sink.js';
import { encodeAlertEvent, HEADER_REF, HEADER_TYPE, logKey } from './messages.js';
import type { LogWriter, OutMessage } from './producer.js';

const tooBig = new Counter({
  name: 'verdict_kafka_events_too_large_total',
  help: 'Agent events dropped because they exceed the Kafka message size even without samples',
  registers: [registry],
});

/**
 * The tunnel's sink when the server scales out: a batch is acknowledged to
 * the agent once Kafka has it (acks=all), not once this replica stored it.
 * Every replica, this one included, stores it by projecting the log; a batch
 * the agent sends twice is in the log twice and stored once (event ids).
 * So `stored` here counts events appended to the log, and `duplicates` is 0:
 * only the projection can tell (verdict_kafka_projected_events_total).
 */
export class KafkaAlertSink implements AlertSink {
  /** Batches are appended in the order they come (LogWriter keeps it per partition), several in flight. */
  readonly pipelined = true;

  constructor(
    private readonly writer: LogWriter,
    private readonly topic: string,
    private readonly replica: string,
    private readonly log: Logger,
  ) {}

  async accept(agent: string, events: IncomingEvent[]): Promise<{ stored: number; duplicates: number }> {
    const at = new Date().toISOString();
    const messages: OutMessage[] = [];
    for (const ev of events) {
      const value = encodeAlertEvent(agent, ev.id, ev.payload, this.replica, at);
      if (value === undefined) {
        // Refusing it would make the agent send it forever and block its spool.
        tooBig.inc();
        this.log.error(
          { agent_name: agent, alert_id: ev.id, title: ev.payload.title.slice(0, 200) },
          'Kafka: dropped an alert event larger than the Kafka message size even without its samples',
        );
        continue;
      }
      messages.push({ topic: this.topic, key: logKey(agent, ev.payload.fingerprint), value, headers: { [HEADER_TYPE]: 'alert', [HEADER_REF]: ev.id } });
    }
    try {
      await this.writer.append(messages);
    } catch (e) {
      // The agent reads this too, and its own hints key on errno names: ECONNREFUSED
      // here would make it blame its --kas-address, which answered fine.
      throw new Error(
        `the alert log in Kafka is unavailable, so the batch is not acknowledged: ${(e as Error).message.replace(/\bconnect ECONNREFUSED\b/g, 'connection refused to').replace(/\bE(CONNRESET|TIMEDOUT|HOSTUNREACH|NOTFOUND)\b/g, (m) => m.slice(1).toLowerCase())}`,
      );
    }
    return { stored: messages.length, duplicates: 0 };
  }
}
