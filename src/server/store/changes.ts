import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStatus } from './alert-query.js';
import type { StoredAlert } from './types.js';

// The store's one extension point. Every write that changes alerts (an agent
// batch, a status change) takes the next change counters (seq) here and hands
// its typed change records to the listeners inside its transaction: what a
// listener writes (the webhook outbox, Kafka's alert names) commits with the
// alerts or not at all, and a listener that throws undoes the whole write.
// Work that must only see committed changes (the live stream) asks the
// transaction to run it after the commit.

/** What one write did to one alert. */
export type AlertChange =
  | {
      type: 'stored';
      /** The alert after the batch; its samples are those that came with the batch. */
      alert: StoredAlert;
      /** True when the batch opened this alert: its first event in `events` did. */
      opened: boolean;
      /** Ids of the batch's events stored into this alert, in batch order (re-sent ones are not). */
      events: readonly string[];
    }
  | { type: 'status'; alert: StoredAlert; from: AlertStatus; actor: string };

export interface ChangeTx {
  /** Runs `fn` once the transaction has committed; never if it rolls back. */
  afterCommit(fn: () => void): void;
}

export type ChangeListener = (changes: readonly AlertChange[], tx: ChangeTx) => void;

export class Changes {
  private seq: number;
  private readonly listeners: ChangeListener[] = [];

  constructor(private readonly db: DB) {
    this.seq = (db.prepare('SELECT coalesce(max(seq), 0) AS s FROM alerts').get() as { s: number }).s;
  }

  /** The change counter of the newest committed change. */
  current(): number {
    return this.seq;
  }

  /** The counter for the next change; only valid inside commit(). */
  next(): number {
    return ++this.seq;
  }

  /** Adds a listener; returns what removes it. */
  listen(l: ChangeListener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /**
   * Runs `write` in one transaction with the listeners of the changes it
   * returns. On any failure the counter goes back and nothing is kept.
   */
  commit<T>(write: () => { changes: AlertChange[]; result: T }): T {
    const seq0 = this.seq;
    const after: (() => void)[] = [];
    const tx: ChangeTx = { afterCommit: (fn) => void after.push(fn) };
    let out: { changes: AlertChange[]; result: T };
    try {
      out = this.db.transaction(() => {
        const r = write();
        if (r.changes.length) for (const l of [...this.listeners]) l(r.changes, tx);
        return r;
      })();
    } catch (e) {
      this.seq = seq0;
      throw e;
    }
    for (const fn of after) fn();
    return out.result;
  }
}
