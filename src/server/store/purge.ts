import type { PolicyRef } from '../../shared/alert/payload.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { OpenAlerts } from './open-alerts.js';
import { RollupDelta, type Rollups } from './rollups.js';
import { OPEN_COLS, SEARCH_JOIN } from './rows.js';
import type { SearchIndex } from './search-text.js';
import { RECEIVED_PRECISION_MS, type AlertRow } from './types.js';

// Deletes what retention no longer keeps, in bounded steps (retention.ts
// schedules them).

export interface PurgeLimits {
  /** Alerts that received no event for this long are deleted with their occurrences and history. */
  maxAgeMs: number;
  /** At most this many alerts; those that received an event least recently go first. */
  maxRows: number;
  /** Event ids are kept this long to recognise a re-sent batch. */
  eventIdMaxAgeMs: number;
  /** At most this many event ids, but never trimming ids younger than eventIdMinAgeMs. */
  maxEventIds: number;
  /** A batch may come again this long after it was stored (the agent's reconnect backoff, then its spool drain). */
  eventIdMinAgeMs?: number;
}

export interface PurgeResult {
  alerts: number;
  eventIds: number;
  /** True when a limit still needs more work (the caller runs another step soon). */
  more: boolean;
}

export class Purge {
  private readonly s;

  constructor(
    private readonly db: DB,
    private readonly open: OpenAlerts,
    private readonly rollups: Rollups,
    private readonly index: SearchIndex,
  ) {
    this.s = {
      // By receipt, not by the events' own clock (server-db.ts, migration 3).
      oldestAlerts: db.prepare(
        `SELECT ${OPEN_COLS} FROM alerts a INDEXED BY alerts_last_received JOIN alert_text t ON t.id = a.id ${SEARCH_JOIN} WHERE a.last_received_at < ? ORDER BY a.last_received_at, a.id LIMIT ?`,
      ),
      leastRecentAlerts: db.prepare(
        `SELECT ${OPEN_COLS} FROM alerts a INDEXED BY alerts_last_received JOIN alert_text t ON t.id = a.id ${SEARCH_JOIN} ORDER BY a.last_received_at, a.id LIMIT ?`,
      ),
      deleteAlert: db.prepare('DELETE FROM alerts WHERE id = ?'),
      trimEventsByAge: db.prepare(
        'DELETE FROM alert_events WHERE id IN (SELECT id FROM (SELECT id, received_at FROM alert_events ORDER BY id LIMIT ?) WHERE received_at < ?)',
      ),
      eventIdRange: db.prepare('SELECT min(id) AS lo, max(id) AS hi FROM alert_events'),
      trimEventsBelow: db.prepare('DELETE FROM alert_events WHERE id < ? AND id < ? AND received_at < ?'),
    };
  }

  /**
   * One bounded step of retention: deletes up to `budget` alerts past the limits,
   * and trims old event ids. Short transactions, so ingest waits at most a few ms.
   */
  step(limits: PurgeLimits, budget = 2000, now = Date.now()): PurgeResult {
    let alerts = 0;
    let eventIds = 0;
    let more = false;
    this.db.transaction(() => {
      // last_received_at lags the latest receipt by up to RECEIVED_PRECISION_MS: an alert still receiving is never taken.
      let victims = this.s.oldestAlerts.all(now - limits.maxAgeMs - RECEIVED_PRECISION_MS, budget) as AlertRow[];
      if (victims.length < budget) {
        const excess = this.rollups.alerts() - victims.length - limits.maxRows;
        if (excess > 0) {
          const n = Math.min(excess, budget - victims.length);
          // The oldest by age are the least recently received too: skip past them.
          victims = this.s.leastRecentAlerts.all(n + victims.length) as AlertRow[];
          if (excess > n) more = true;
        }
      } else {
        more = true;
      }
      const rollup = new RollupDelta();
      for (const v of victims) {
        // A trigger takes its policies, occurrences and history with it.
        this.index.remove(v.id, v.title, v.description, v.search_text ?? '');
        this.index.removeAdded(v.id);
        this.s.deleteAlert.run(v.id);
        rollup.add(-1, v, JSON.parse(v.policies) as PolicyRef[]);
        this.open.forget(v.agent, v.fingerprint, v.id);
      }
      rollup.writeTo(this.rollups);
      if (victims.length) this.rollups.tidy();
      alerts = victims.length;
      const byAge = this.s.trimEventsByAge.run(budget * 5, now - limits.eventIdMaxAgeMs).changes;
      eventIds += byAge;
      if (byAge === budget * 5) more = true;
      const { lo, hi } = this.s.eventIdRange.get() as { lo: number | null; hi: number | null };
      if (lo !== null && hi !== null && hi - lo + 1 > limits.maxEventIds) {
        // Rowids are dense in arrival order, so the oldest beyond the cap are a range.
        const cut = hi - limits.maxEventIds + 1;
        const upTo = Math.min(cut, lo + budget * 5);
        // Under a flood the count cap would reach ids an agent may still re-send: those stay.
        const trimmed = this.s.trimEventsBelow.run(upTo, cut, now - (limits.eventIdMinAgeMs ?? 0)).changes;
        eventIds += trimmed;
        if (upTo < cut && trimmed > 0) more = true;
      }
    })();
    return { alerts, eventIds, more };
  }
}
