import { MAX_SAMPLES } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStatus } from './alert-query.js';
import { iso, JOINED, ROW_COLS, rowToAlert, TEXT_COLS } from './rows.js';
import { OCCURRENCES_KEPT, PINNED_SLOT, type AlertDetail, type AlertRow, type NarrowRow, type Occurrence, type StoredAlert, type TextRow } from './types.js';

// Reads of single alerts: an alert, its detail (occurrences and history), and
// the lookups other parts of the server name alerts by.

const OCC_COLS = 'event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples';

type OccurrenceRow = Omit<Occurrence, 'description' | 'labels' | 'samples' | 'received_at' | 'first_seen' | 'last_seen'> & {
  description: string | null;
  labels: string | null;
  samples: string;
  received_at: number;
  first_seen: number;
  last_seen: number;
};

export class Reads {
  private readonly s;

  constructor(db: DB) {
    this.s = {
      getById: db.prepare(`SELECT ${ROW_COLS} FROM ${JOINED} WHERE a.id = ?`),
      textOf: db.prepare<unknown[]>(`SELECT id, ${TEXT_COLS} FROM alert_text WHERE id IN (SELECT value FROM json_each(?))`),
      // Named indexes: a lookup by alert must never become a scan, whatever the statistics say.
      samplesOf: db.prepare(
        `SELECT samples FROM alert_occurrences INDEXED BY alert_occurrences_slot WHERE alert_id = ? AND slot >= 0 ORDER BY event_no DESC LIMIT ${MAX_SAMPLES}`,
      ),
      occurrencesOf: db.prepare(
        `SELECT ${OCC_COLS} FROM alert_occurrences INDEXED BY alert_occurrences_slot WHERE alert_id = ? AND slot >= 0 ORDER BY event_no DESC LIMIT ?`,
      ),
      // In the ring while it is among the latest, else in the pinned slot.
      occurrenceNo: db.prepare(
        `SELECT ${OCC_COLS} FROM alert_occurrences INDEXED BY alert_occurrences_slot WHERE alert_id = ? AND event_no = ? ORDER BY slot = ${PINNED_SLOT} LIMIT 1`,
      ),
      historyOf: db.prepare('SELECT from_status, to_status, actor, at FROM alert_status_changes WHERE alert_id = ? ORDER BY id'),
      alertOfEvent: db.prepare('SELECT alert_id FROM alert_events WHERE event_id = ?'),
      openAlert: db.prepare("SELECT id FROM alerts WHERE agent = ? AND fingerprint = ? AND status != 'resolved'"),
    };
  }

  get(id: number): StoredAlert | undefined {
    const r = this.s.getById.get(id) as AlertRow | undefined;
    return r && this.withSamples(r);
  }

  private withSamples(r: AlertRow): StoredAlert {
    const samples = (this.s.samplesOf.all(r.id) as { samples: string }[])
      .reverse()
      .flatMap((x) => JSON.parse(x.samples) as unknown[])
      .slice(-MAX_SAMPLES);
    return rowToAlert(r, samples);
  }

  /**
   * An alert with its latest occurrences (newest first), the occurrence that
   * set its severity (which may be among them), and its status history (oldest first).
   */
  detail(id: number, occurrences = OCCURRENCES_KEPT): AlertDetail | undefined {
    const r = this.s.getById.get(id) as AlertRow | undefined;
    if (!r) return undefined;
    const alert = this.withSamples(r);
    const occurrence = (o: OccurrenceRow): Occurrence => ({
      ...o,
      received_at: iso(o.received_at),
      first_seen: iso(o.first_seen),
      last_seen: iso(o.last_seen),
      // Null: the same as the alert's (ingest writes an occurrence's own out before the alert's changes).
      description: o.description ?? alert.description,
      labels: o.labels === null ? alert.labels : (JSON.parse(o.labels) as Record<string, string>),
      samples: JSON.parse(o.samples) as unknown[],
    });
    const occ = (this.s.occurrencesOf.all(id, occurrences) as OccurrenceRow[]).map(occurrence);
    const setter = this.s.occurrenceNo.get(id, r.severity_event) as OccurrenceRow | undefined;
    const history = (this.s.historyOf.all(id) as { from_status: AlertStatus; to_status: AlertStatus; actor: string; at: number }[]).map((h) => ({
      from: h.from_status,
      to: h.to_status,
      actor: h.actor,
      at: iso(h.at),
    }));
    return { alert, occurrences: occ, ...(setter ? { severity_occurrence: occurrence(setter) } : {}), history };
  }

  /** Narrow rows completed with their text (title, description...), in the same order. */
  withText(rows: readonly NarrowRow[]): StoredAlert[] {
    if (!rows.length) return [];
    const text = new Map((this.s.textOf.all(JSON.stringify(rows.map((r) => r.id))) as TextRow[]).map((t) => [t.id, t]));
    const out: StoredAlert[] = [];
    for (const r of rows) {
      const t = text.get(r.id);
      if (t) out.push(rowToAlert({ ...r, ...t }));
    }
    return out;
  }

  /** The alert an event id was stored into, while the id is remembered (see retention). */
  alertOfEvent(eventId: string): number | undefined {
    return (this.s.alertOfEvent.get(eventId) as { alert_id: number } | undefined)?.alert_id;
  }

  /** The open (not resolved) alert of an agent's fingerprint. */
  openAlertId(agent: string, fingerprint: string): number | undefined {
    return (this.s.openAlert.get(agent, fingerprint) as { id: number } | undefined)?.id;
  }
}
