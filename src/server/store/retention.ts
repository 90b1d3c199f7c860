import { errText, type Logger } from '../../shared/log/logger.js';
import type { AlertStore, PurgeLimits } from './alert-store.js';

// The background purge that keeps the store bounded: alerts that received no
// event for max_age, or beyond max_rows (least recently received first), go with their occurrences and
// history, and event ids kept for de-duplicating re-sent batches are trimmed.
// SQLite reuses the freed pages, so the file stops growing at its high-water mark.

export interface RetentionConfig {
  max_age: number; // ms
  max_rows: number;
  purge_interval: number; // ms
}

export const RETENTION_DEFAULTS: RetentionConfig = {
  max_age: 30 * 24 * 3_600_000,
  max_rows: 500_000,
  purge_interval: 60_000,
};

/** Agents re-send a batch whose acknowledgement they missed, typically within minutes of a reconnect. */
export const EVENT_ID_MAX_AGE = 48 * 3_600_000;
export const MAX_EVENT_IDS = 5_000_000;
/**
 * Ids younger than this are kept whatever their number: an agent re-sends what
 * it sent before a server crash after its reconnect backoff (at most 5 min by
 * default) plus the time to drain its spool.
 */
export const EVENT_ID_MIN_AGE = 15 * 60_000;

export function purgeLimits(cfg: RetentionConfig): PurgeLimits {
  return {
    maxAgeMs: cfg.max_age,
    maxRows: cfg.max_rows,
    eventIdMaxAgeMs: Math.min(EVENT_ID_MAX_AGE, cfg.max_age),
    maxEventIds: MAX_EVENT_IDS,
    eventIdMinAgeMs: EVENT_ID_MIN_AGE,
  };
}

export interface Retention {
  /** Runs a full purge now (tests, and the first run at start-up). */
  runOnce(): Promise<{ alerts: number; eventIds: number }>;
  stop(): void;
}

export function startRetention(o: { store: AlertStore; config: RetentionConfig; log: Logger }): Retention {
  const limits = purgeLimits(o.config);
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<{ alerts: number; eventIds: number }> | undefined;
  let runs = 0;

  const run = async (): Promise<{ alerts: number; eventIds: number }> => {
    let alerts = 0;
    let eventIds = 0;
    const started = Date.now();
    try {
      for (;;) {
        const r = o.store.purgeStep(limits);
        alerts += r.alerts;
        eventIds += r.eventIds;
        if (!r.more || stopped) break;
        // Let ingest and the feed run between steps.
        await new Promise((res) => setImmediate(res));
        if (stopped) break;
      }
      if (++runs % 60 === 1) o.store.refreshPlannerStats();
      if (alerts)
        o.log.info(
          { alerts, event_ids: eventIds, duration_ms: Date.now() - started, max_age_ms: limits.maxAgeMs, max_rows: limits.maxRows },
          'Retention: purged old alerts',
        );
    } catch (e) {
      o.log.error({ error: errText(e) }, 'Retention: purging old alerts failed; trying again at the next interval');
    }
    return { alerts, eventIds };
  };

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = run().finally(() => {
        running = undefined;
        schedule();
      });
    }, o.config.purge_interval);
    timer.unref();
  };
  // A first pass soon after start-up, so limits lowered in the config apply at once.
  timer = setTimeout(
    () => {
      running = run().finally(() => {
        running = undefined;
        schedule();
      });
    },
    Math.min(5_000, o.config.purge_interval),
  );
  timer.unref();

  return {
    runOnce: () => running ?? run(),
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
