import { EventEmitter } from 'node:events';
import { MAX_SAMPLES, type AlertPayload, type PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';

// Stores alert events from agents. An alert groups occurrences by agent and
// fingerprint: a repeat of an open alert (triggered, acknowledged or ignored)
// increments its count; a repeat of a resolved one opens a new alert. Event ids
// make a re-sent batch idempotent.

export const STATUSES = ['triggered', 'acknowledged', 'resolved', 'ignored'] as const;
export type AlertStatus = (typeof STATUSES)[number];

export interface StoredAlert {
  id: number;
  fingerprint: string;
  agent: string;
  status: AlertStatus;
  source: string;
  severity: string;
  title: string;
  description: string;
  cluster: string;
  namespace: string;
  policies: PolicyRef[];
  rule: string;
  labels: Record<string, string>;
  details: Record<string, unknown>;
  samples: unknown[];
  count: number;
  first_seen: string;
  last_seen: string;
  created_at: string;
  updated_at: string;
  seq: number;
}

interface AlertRow extends Omit<StoredAlert, 'policies' | 'labels' | 'details' | 'samples'> {
  policies: string;
  labels: string;
  details: string;
  samples: string;
}

export function rowToAlert(r: AlertRow): StoredAlert {
  return {
    ...r,
    policies: JSON.parse(r.policies) as PolicyRef[],
    labels: JSON.parse(r.labels) as Record<string, string>,
    details: JSON.parse(r.details) as Record<string, unknown>,
    samples: JSON.parse(r.samples) as unknown[],
  };
}

export interface IncomingEvent {
  id: string;
  payload: AlertPayload;
}

export interface IngestResult {
  stored: number;
  duplicates: number;
  alerts: StoredAlert[];
}

export class AlertStore extends EventEmitter<{ changed: [StoredAlert[]] }> {
  private readonly findOpen;
  private readonly insertAlert;
  private readonly updateAlert;
  private readonly insertEvent;
  private readonly getById;
  private seq: number;
  private readonly txHooks: ((changed: StoredAlert[]) => void)[] = [];

  constructor(private readonly db: DB) {
    super();
    this.findOpen = db.prepare("SELECT * FROM alerts WHERE agent = ? AND fingerprint = ? AND status != 'resolved'");
    this.insertAlert = db.prepare(`INSERT INTO alerts (fingerprint, agent, status, source, severity, title, description, cluster, namespace,
      policies, rule, labels, details, samples, count, first_seen, last_seen, created_at, updated_at, seq)
      VALUES (@fingerprint, @agent, 'triggered', @source, @severity, @title, @description, @cluster, @namespace,
      @policies, @rule, @labels, @details, @samples, @count, @first_seen, @last_seen, @now, @now, @seq)`);
    this.updateAlert = db.prepare(`UPDATE alerts SET count = count + @count, first_seen = min(first_seen, @first_seen),
      last_seen = max(last_seen, @last_seen), description = CASE WHEN @last_seen >= last_seen THEN @description ELSE description END,
      severity = @severity, samples = @samples, updated_at = @now, seq = @seq WHERE id = @id`);
    this.insertEvent = db.prepare('INSERT OR IGNORE INTO alert_events (event_id, alert_id, received_at) VALUES (?, ?, ?)');
    this.getById = db.prepare('SELECT * FROM alerts WHERE id = ?');
    this.seq = (db.prepare('SELECT coalesce(max(seq), 0) AS s FROM alerts').get() as { s: number }).s;
  }

  /** Stores a batch in one transaction; the caller acknowledges after it returns. */
  ingest(agent: string, events: readonly IncomingEvent[]): IngestResult {
    const now = new Date().toISOString();
    const changed = new Map<number, StoredAlert>();
    let stored = 0;
    let duplicates = 0;
    const receivedAt = Date.now();
    this.db.transaction(() => {
      for (const ev of events) {
        const p = ev.payload;
        const open = this.findOpen.get(agent, p.fingerprint) as AlertRow | undefined;
        let alertId: number;
        const seq = ++this.seq;
        if (open) {
          // Claim the event id first: a re-sent batch must not count twice.
          if (this.insertEvent.run(ev.id, open.id, receivedAt).changes === 0) {
            duplicates++;
            this.seq--;
            continue;
          }
          const samples = (JSON.parse(open.samples) as unknown[]).concat(p.samples).slice(-MAX_SAMPLES);
          this.updateAlert.run({ id: open.id, count: p.count, first_seen: p.first_seen, last_seen: p.last_seen, description: p.description, severity: p.severity, samples: JSON.stringify(samples), now, seq });
          alertId = open.id;
        } else {
          const info = this.insertAlert.run({
            fingerprint: p.fingerprint, agent, source: p.source, severity: p.severity, title: p.title.slice(0, 200),
            description: p.description.slice(0, 4000), cluster: p.cluster, namespace: p.namespace,
            policies: JSON.stringify(p.policies), rule: p.rule, labels: JSON.stringify(p.labels),
            details: JSON.stringify(p.cilium ? { cilium: p.cilium } : p.falco ? { falco: p.falco } : {}),
            samples: JSON.stringify(p.samples.slice(-MAX_SAMPLES)), count: p.count, first_seen: p.first_seen,
            last_seen: p.last_seen, now, seq,
          });
          alertId = Number(info.lastInsertRowid);
          if (this.insertEvent.run(ev.id, alertId, receivedAt).changes === 0) {
            // Seen before, but its alert was resolved since: do not reopen on a re-send.
            duplicates++;
            this.db.prepare('DELETE FROM alerts WHERE id = ?').run(alertId);
            this.seq--;
            continue;
          }
        }
        stored++;
        changed.set(alertId, rowToAlert(this.getById.get(alertId) as AlertRow));
      }
      // Hooks write in the same transaction (e.g. the webhook outbox), so a
      // stored alert and its follow-up work commit together or not at all.
      if (changed.size) for (const h of this.txHooks) h([...changed.values()]);
    })();
    const alerts = [...changed.values()];
    if (alerts.length) this.emit('changed', alerts);
    return { stored, duplicates, alerts };
  }

  /** Registers work that must commit atomically with stored alerts. */
  onStoredInTransaction(hook: (changed: StoredAlert[]) => void): void {
    this.txHooks.push(hook);
  }

  get(id: number): StoredAlert | undefined {
    const r = this.getById.get(id) as AlertRow | undefined;
    return r && rowToAlert(r);
  }

  list(opts: { limit: number }): StoredAlert[] {
    return (this.db.prepare('SELECT * FROM alerts ORDER BY last_seen DESC, id DESC LIMIT ?').all(opts.limit) as AlertRow[]).map(rowToAlert);
  }
}
