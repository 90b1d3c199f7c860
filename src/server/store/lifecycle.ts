import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import { STATUSES, type AlertStatus } from './alert-query.js';
import type { Changes } from './changes.js';
import type { OpenAlerts } from './open-alerts.js';
import { RollupDelta, type Rollups } from './rollups.js';
import { JOINED, ROW_COLS, rowToAlert } from './rows.js';
import type { AlertRow, StoredAlert } from './types.js';
import { VerdictError } from '../../shared/errors.js';

// Triage: `triggered`, `acknowledged`, `resolved`, `ignored`, any to any, each
// change recorded with who made it. One open alert per agent and fingerprint.

/** A status change that would make two open alerts for one fingerprint (VERDICT_CONFLICT). */
function statusConflict(openId: number): VerdictError {
  return new VerdictError('VERDICT_CONFLICT', `alert ${openId} is already open for the same agent and fingerprint; change that one, or resolve it first`);
}

export class Lifecycle {
  private readonly s;

  constructor(
    db: DB,
    private readonly changes: Changes,
    private readonly open: OpenAlerts,
    private readonly rollups: Rollups,
  ) {
    this.s = {
      getById: db.prepare(`SELECT ${ROW_COLS} FROM ${JOINED} WHERE a.id = ?`),
      openOther: db.prepare("SELECT id FROM alerts WHERE agent = ? AND fingerprint = ? AND status != 'resolved' AND id != ?"),
      setStatus: db.prepare('UPDATE alerts SET status = ?, updated_at = ?, seq = ? WHERE id = ?'),
      addHistory: db.prepare('INSERT INTO alert_status_changes (alert_id, from_status, to_status, actor, at) VALUES (?, ?, ?, ?, ?)'),
    };
  }

  /**
   * Throws VERDICT_CONFLICT when moving alert `a` (now `from`) to `to`
   * would make a second open alert for its fingerprint.
   */
  checkReopen(a: Pick<StoredAlert, 'id' | 'agent' | 'fingerprint'>, from: AlertStatus, to: AlertStatus): void {
    if (from !== 'resolved' || to === 'resolved') return;
    const other = this.s.openOther.get(a.agent, a.fingerprint, a.id) as { id: number } | undefined;
    if (other) throw statusConflict(other.id);
  }

  /**
   * Moves an alert to another status (any to any) and records who did it.
   * Returns undefined for an unknown id; throws VERDICT_CONFLICT when
   * reopening would make a second open alert for the same fingerprint.
   */
  setStatus(id: number, to: AlertStatus, actor: string): StoredAlert | undefined {
    if (!STATUSES.includes(to)) throw new VerdictError('VERDICT_BAD_REQUEST', `status must be one of ${STATUSES.join(', ')}`);
    const done = this.changes.commit<{ alert: StoredAlert; changed?: { at: number; seq: number } } | undefined>(() => {
      const r = this.s.getById.get(id) as AlertRow | undefined;
      if (!r) return { changes: [], result: undefined };
      if (r.status === to) return { changes: [], result: { alert: rowToAlert(r) } };
      this.checkReopen(r, r.status, to);
      const now = Date.now();
      const seq = this.changes.next();
      this.s.setStatus.run(to, now, seq, id);
      this.s.addHistory.run(id, r.status, to, actor, now);
      const policies = JSON.parse(r.policies) as PolicyRef[];
      const rollup = new RollupDelta();
      rollup.add(-1, r, policies);
      rollup.add(1, { ...r, status: to }, policies);
      rollup.writeTo(this.rollups);
      const alert = rowToAlert({ ...r, status: to, updated_at: now, seq });
      return { changes: [{ type: 'status', alert, from: r.status, actor }], result: { alert, changed: { at: now, seq } } };
    });
    if (!done) return undefined;
    const { alert, changed } = done;
    // Only once committed: a rolled-back change must not linger in the cache.
    if (changed) {
      const cached = this.open.entryOf(alert.agent, alert.fingerprint, id);
      if (to === 'resolved') this.open.forget(alert.agent, alert.fingerprint, id);
      else if (cached) this.open.statusChanged(cached, to, changed.at, changed.seq);
    }
    return alert;
  }
}
