import type { Admin } from 'kafkajs';
import type { KafkaConfig } from '../../shared/config/kafka-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { LogWriter } from './producer.js';

/**
 * How often a running replica looks at the log's partition count, and how
 * old its consumers' metadata may get (kafkajs metadataMaxAge, 5 min by
 * default): a consumer group reads partitions added to its topic only once
 * the metadata of the member that assigns them shows them.
 */
export const PARTITION_CHECK_MS = 30_000;

const SAFE_PROCEDURE = "see 'Adding partitions to the log' in docs/kafka.md";

function metaKey(topic: string): string {
  return `log_partitions/${topic}`;
}

/**
 * Records a count the log grew to. Never a lower one: the positions in the
 * store still point into the deleted log, and every start says so until the
 * operator gives the server an empty data_dir (which drops the record too).
 */
function record(db: DB, topic: string, n: number): void {
  db.prepare(
    'INSERT INTO kafka_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)',
  ).run(metaKey(topic), String(n));
}

/**
 * A key's partition among n is murmur2 % n: with n a multiple of the count
 * before, every key stays in its partition or moves to an added (higher)
 * one, which a fetch applies after the old ones. Otherwise some keys move to
 * a lower, older partition, and their new events may be applied before
 * older ones still unread in the partition they left.
 */
function warnNotMultiple(log: Logger, topic: string, before: number, n: number): void {
  if (n <= before || n % before === 0) return;
  log.warn(
    { topic, partitions: n, before },
    `Kafka: topic ${topic} (the alert log) grew from ${before} to ${n} partitions, not a multiple of ${before}: some alerts' keys now fall in a lower-numbered partition than before (with a multiple every key stays in its partition or moves to an added one), so an alert with events still unread in its old partition may have its new events applied before them, and its status or event count be off until its next change; grow the log by a multiple of its count (${before} to ${before * 2}) next time, ${SAFE_PROCEDURE}`,
  );
}

/**
 * Compares the log's partition count with the one this replica's store
 * recorded when it last ran, says what a difference means, and records a
 * higher count. Kafka never lowers a count: fewer means the topic was deleted
 * and created again, and the positions in the store point into a log that
 * is gone; that is said at every start (the lower count is not recorded)
 * until the data_dir is emptied.
 */
export function checkRecordedPartitions(db: DB, cfg: KafkaConfig, topic: string, n: number, log: Logger): void {
  const row = db.prepare('SELECT value FROM kafka_meta WHERE key = ?').get(metaKey(topic)) as { value: string } | undefined;
  const before = row ? Number(row.value) : undefined;
  if (before !== undefined && before !== n) {
    if (n > before) {
      log.warn(
        { topic, partitions: n, before },
        `Kafka: topic ${topic} has ${n} partitions, ${before} when this replica last ran: partitions were added meanwhile, so alerts' events go to other partitions than before (by their key among the ${n}); an alert whose events straddle the change may have them applied out of order once; ${cfg.from_flag ? '' : `set kafka.partitions: ${n} to match, and `}${SAFE_PROCEDURE}`,
      );
      warnNotMultiple(log, topic, before, n);
    } else {
      log.error(
        { topic, partitions: n, before },
        `Kafka: topic ${topic} has ${n} partitions, fewer than the ${before} it had when this replica last ran: Kafka never removes partitions, so the topic was deleted and created again, and what this replica's store recorded of the log no longer matches it; stop this server and give it an empty data_dir (it is rebuilt from the log as it is now); this is said at every start until then`,
      );
    }
  }
  record(db, topic, n);
}

export interface PartitionWatchOptions {
  admin: Admin;
  db: DB;
  cfg: KafkaConfig;
  writer: LogWriter;
  log: Logger;
  logTopic: string;
  /** '' when the export is off. */
  exportTopic: string;
  logPartitions: number;
  exportPartitions: number;
  /** Told the log's new count (the projection's own-group check). */
  onLogGrew: (n: number) => void;
  intervalMs?: number | undefined;
}

/**
 * Notices partitions added to the log (or the export) while this replica
 * runs: the writer then places keys among the new count, as a replica
 * started now does, instead of putting every alert in the partition of the
 * count it started with while other replicas use another. The consumers
 * read the new partitions once their metadata shows them (PARTITION_CHECK_MS).
 */
export class PartitionWatch {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly known = new Map<string, number>();

  constructor(private readonly o: PartitionWatchOptions) {
    this.known.set(o.logTopic, o.logPartitions);
    if (o.exportTopic) this.known.set(o.exportTopic, o.exportPartitions);
  }

  start(): void {
    this.schedule();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.check().finally(() => this.schedule());
    }, this.o.intervalMs ?? PARTITION_CHECK_MS);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    let topics;
    try {
      topics = (await this.o.admin.fetchTopicMetadata({ topics: [...this.known.keys()] })).topics;
    } catch (e) {
      // Kafka unavailable: the producer and consumers say so; the count is looked at again next time.
      this.o.log.debug({ error: errText(e) }, 'Kafka: reading the partition count of the log failed');
      return;
    }
    if (this.stopped) return;
    for (const t of topics) {
      const before = this.known.get(t.name);
      const n = t.partitions.length;
      // No leader yet: the new partitions cannot be written to until they have one.
      if (before === undefined || n === before || n === 0 || t.partitions.some((p) => p.leader < 0)) continue;
      this.known.set(t.name, n);
      if (n < before) {
        this.o.log.error(
          { topic: t.name, partitions: n, before },
          `Kafka: topic ${t.name} has ${n} partitions, fewer than the ${before} it had: it was deleted and created again while this replica runs, and what this replica's store recorded of the log no longer matches it; requests for the partitions it lost fail; stop every server, then start them with empty data_dirs (they are rebuilt from the log as it is now)`,
        );
        continue;
      }
      this.o.writer.setPartitions(t.name, n);
      if (t.name !== this.o.logTopic) {
        this.o.log.warn(
          { topic: t.name, partitions: n, before },
          `Kafka: topic ${t.name} (the export) grew from ${before} to ${n} partitions; alerts are exported to the partition of their id among the ${n} from now on, so an export consumer may get an alert's changes from two partitions once`,
        );
        continue;
      }
      this.o.onLogGrew(n);
      record(this.o.db, t.name, n);
      this.o.log.warn(
        { topic: t.name, partitions: n, before },
        `Kafka: topic ${t.name} (the alert log) grew from ${before} to ${n} partitions while this replica runs; it now puts alerts' events in the partition of their key among the ${n}, and its projection and delivery read the new partitions within ${Math.round((this.o.intervalMs ?? PARTITION_CHECK_MS) / 1000)} s; an alert whose events straddle the change may have them applied out of order once; ${this.o.cfg.from_flag ? '' : `set kafka.partitions: ${n} to match, and `}${SAFE_PROCEDURE}`,
      );
      warnNotMultiple(this.o.log, t.name, before, n);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
