import { Counter } from 'prom-client';
import { MAX_SAMPLES, type AlertPayload } from '../../../shared/alert/payload.js';
import type { Logger } from '../../../shared/log/logger.js';
import { registry } from '../../../shared/metrics/registry.js';
import { migrate, type DB } from '../../../shared/sqlite/open.js';
import { FalcoEventError, parseFalcoJson } from './parse.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Where every Falco input hands its events: one SQLite transaction takes the
// alert occurrences (through the aggregator), the Falcosidekick uuids seen and
// whatever the input must remember with them (a file offset), so an event is
// either fully accepted or not at all.

export type FalcoInput = 'http' | 'file' | 'stdin' | 'grpc';
export type Outcome = 'accepted' | 'duplicate';

export const falcoEvents = new Counter({
  name: 'verdict_agent_falco_events_total',
  help: 'Falco events received, by input and outcome (accepted, duplicate, ignored, below_minimum_priority, invalid, failed)',
  labelNames: ['input', 'outcome'],
  registers: [registry],
});

const MIGRATIONS = [
  `CREATE TABLE falco_uuids (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     uuid TEXT NOT NULL UNIQUE
   )`,
  // Lookups moved to memory: a unique index on random uuids cost one random
  // B-tree page write per event, more than the rest of the HTTP path together.
  // The table is now an append-only log of the recent set, read at start.
  `CREATE TABLE falco_uuids_log (seq INTEGER PRIMARY KEY, uuid TEXT NOT NULL);
   INSERT INTO falco_uuids_log (seq, uuid) SELECT seq, uuid FROM falco_uuids;
   DROP TABLE falco_uuids;
   ALTER TABLE falco_uuids_log RENAME TO falco_uuids;`,
];

/** What the sink needs of the aggregator (ctx.alerts). */
export interface AlertAdder {
  add(alerts: readonly AlertPayload[], windowMs: number): void;
}

export interface SinkItem {
  alert: AlertPayload;
  uuid?: string;
}

export interface FalcoSinkOptions {
  /** Remembered Falcosidekick uuids; 0 turns idempotency off. */
  uuidCacheSize: number;
  /**
   * The dedup window (falco.dedup_window). With a non-zero window repeats inside
   * one batch are folded before the aggregator sees them: it would fold them
   * anyway, and one upsert per fingerprint is much cheaper than one per event.
   */
  windowMs: number;
  log: Logger;
  /** Events per transaction at most; bounds how long one commit holds the loop. */
  maxBatch?: number;
  /** Pending submissions beyond which submit() refuses work (the caller answers 503). */
  maxQueued?: number;
}

interface Pending {
  item: SinkItem;
  resolve: (o: Outcome) => void;
  reject: (e: Error) => void;
}

export class SinkOverloadedError extends Error {
  readonly code = 'VERDICT_FALCO_OVERLOADED';
}

interface TxResult {
  outcomes: Outcome[];
  added: string[];
  trimmed: number;
}

export class FalcoSink {
  private readonly insertUuid;
  private readonly trimUuids;
  /** The recent uuid set: `seen` for lookups, `order` (from `head`) oldest first with seqs from `firstSeq`. */
  private readonly seen = new Set<string>();
  private order: string[] = [];
  private head = 0;
  private firstSeq = 1;
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly idle = new Set<() => void>();
  private readonly tx;

  constructor(private readonly db: DB, private readonly alerts: AlertAdder, private readonly opts: FalcoSinkOptions) {
    migrate(db, 'falco_uuids', MIGRATIONS);
    this.insertUuid = db.prepare('INSERT INTO falco_uuids (seq, uuid) VALUES (?, ?)');
    this.trimUuids = db.prepare('DELETE FROM falco_uuids WHERE seq < ?');
    const rows = db.prepare('SELECT seq, uuid FROM falco_uuids ORDER BY seq').all() as { seq: number; uuid: string }[];
    if (rows.length) {
      this.firstSeq = rows[0]!.seq;
      if (rows[rows.length - 1]!.seq - this.firstSeq + 1 !== rows.length) {
        // Seqs are appended one by one and trimmed from the oldest, so they are
        // contiguous; renumber if something else left a gap.
        const insert = this.insertUuid;
        db.transaction(() => {
          db.prepare('DELETE FROM falco_uuids').run();
          rows.forEach((r, i) => insert.run(this.firstSeq + i, r.uuid));
        })();
      }
      for (const r of rows) {
        this.seen.add(r.uuid);
        this.order.push(r.uuid);
      }
    }
    this.tx = db.transaction((items: readonly SinkItem[], after?: () => void) => this.commitInTx(items, after));
  }

  /** Accepts items durably in one transaction, with `after` run inside it. */
  commit(items: readonly SinkItem[], after?: () => void): Outcome[] {
    if (items.length === 0 && !after) return [];
    const r = this.tx(items, after);
    // Only a committed transaction changes the in-memory set; a rolled back one
    // must not make a retry look like a duplicate.
    for (const u of r.added) {
      this.seen.add(u);
      this.order.push(u);
    }
    if (r.trimmed) {
      for (let i = 0; i < r.trimmed; i++) this.seen.delete(this.order[this.head + i]!);
      this.head += r.trimmed;
      this.firstSeq += r.trimmed;
      if (this.head > 4096 && this.head * 2 > this.order.length) {
        this.order = this.order.slice(this.head);
        this.head = 0;
      }
    }
    return r.outcomes;
  }

  /** Queues one item for the next tick's transaction; resolves once it is durable. */
  submit(item: SinkItem): Promise<Outcome> {
    if (this.queue.length >= (this.opts.maxQueued ?? 50_000)) {
      return Promise.reject(new SinkOverloadedError('the agent has too many Falco events waiting to be stored; retry shortly'));
    }
    return new Promise<Outcome>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.drainQueue());
      }
    });
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Resolves when everything submitted so far is stored (or refused). */
  async drain(): Promise<void> {
    if (this.queue.length === 0 && !this.scheduled) return;
    await new Promise<void>((resolve) => this.idle.add(resolve));
  }

  private drainQueue(): void {
    this.scheduled = false;
    const max = this.opts.maxBatch ?? 2_000;
    while (this.queue.length) {
      const batch = this.queue.length <= max ? this.queue : this.queue.slice(0, max);
      this.queue = this.queue.length <= max ? [] : this.queue.slice(max);
      let outcomes: Outcome[];
      try {
        outcomes = this.commit(batch.map((p) => p.item));
      } catch (e) {
        this.opts.log.error({ error: (e as Error).message, events: batch.length }, 'Failed to store Falco events; senders get 503');
        for (const p of batch) p.reject(e as Error);
        continue;
      }
      for (let i = 0; i < batch.length; i++) batch[i]!.resolve(outcomes[i]!);
    }
    for (const f of this.idle) f();
    this.idle.clear();
  }

  private commitInTx(items: readonly SinkItem[], after?: () => void): TxResult {
    const outcomes: Outcome[] = new Array<Outcome>(items.length);
    const fresh: AlertPayload[] = [];
    const cap = this.opts.uuidCacheSize;
    const added: string[] = [];
    let batch: Set<string> | undefined;
    const nextSeq = this.firstSeq + (this.order.length - this.head);
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const uuid = it.uuid;
      if (cap > 0 && uuid !== undefined) {
        batch ??= new Set();
        if (this.seen.has(uuid) || batch.has(uuid)) {
          outcomes[i] = 'duplicate';
          continue;
        }
        batch.add(uuid);
        this.insertUuid.run(nextSeq + added.length, uuid);
        added.push(uuid);
      }
      outcomes[i] = 'accepted';
      fresh.push(it.alert);
    }
    if (fresh.length) this.alerts.add(this.opts.windowMs > 0 ? foldRepeats(fresh) : fresh, this.opts.windowMs);
    // Bounded recent set: forget the oldest, in steps so the delete is rare.
    let trimmed = 0;
    const over = this.order.length - this.head + added.length - cap;
    if (added.length && over >= Math.max(1, Math.floor(cap / 10))) {
      trimmed = over;
      this.trimUuids.run(this.firstSeq + trimmed);
    }
    after?.();
    return { outcomes, added, trimmed };
  }
}

/** Folds occurrences with the same fingerprint into one with a count, as the aggregator would. */
export function foldRepeats(alerts: readonly AlertPayload[]): AlertPayload[] {
  if (alerts.length < 2) return alerts as AlertPayload[];
  const byFp = new Map<string, AlertPayload>();
  for (const a of alerts) {
    const g = byFp.get(a.fingerprint);
    if (!g) {
      byFp.set(a.fingerprint, a);
      continue;
    }
    g.count += a.count;
    if (a.first_seen < g.first_seen) g.first_seen = a.first_seen;
    if (a.last_seen >= g.last_seen) {
      g.last_seen = a.last_seen;
      g.description = a.description;
    }
    for (const s of a.samples) {
      if (g.samples.length >= MAX_SAMPLES) break;
      g.samples.push(s);
    }
  }
  return byFp.size === alerts.length ? (alerts as AlertPayload[]) : [...byFp.values()];
}

/**
 * Turns JSON lines (file_output, program_output) into sink items, counting and
 * reporting the lines that are not Falco events. Reports at most one line per
 * minute so a misconfigured Falco cannot flood the log.
 */
export class LineDecoder {
  private lastWarn = 0;
  private suppressed = 0;

  constructor(private readonly input: FalcoInput, private readonly builder: FalcoAlertBuilder, private readonly log: Logger) {}

  decode(lines: readonly string[]): SinkItem[] {
    const items: SinkItem[] = [];
    for (const line of lines) {
      if (line.trim() === '') continue;
      let ev;
      try {
        ev = parseFalcoJson(line);
      } catch (e) {
        falcoEvents.inc({ input: this.input, outcome: 'invalid' });
        this.warn(e instanceof FalcoEventError ? e.message : String(e), line);
        continue;
      }
      const r = this.builder.build(ev);
      if (r.skipped) {
        falcoEvents.inc({ input: this.input, outcome: r.skipped });
        continue;
      }
      items.push({ alert: r.alert, uuid: ev.uuid });
    }
    return items;
  }

  private warn(reason: string, line: string): void {
    const now = Date.now();
    if (now - this.lastWarn < 60_000) {
      this.suppressed++;
      return;
    }
    this.log.warn({ input: this.input, reason, line: line.slice(0, 200), suppressed: this.suppressed }, 'Skipped a line that is not a Falco JSON event; check json_output: true in falco.yaml');
    this.lastWarn = now;
    this.suppressed = 0;
  }
}

export function countOutcomes(input: FalcoInput, outcomes: readonly Outcome[]): void {
  let accepted = 0;
  let dup = 0;
  for (const o of outcomes) o === 'accepted' ? accepted++ : dup++;
  if (accepted) falcoEvents.inc({ input, outcome: 'accepted' }, accepted);
  if (dup) falcoEvents.inc({ input, outcome: 'duplicate' }, dup);
}
