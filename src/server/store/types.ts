import type { AlertPayload } from '../../shared/alert/payload.js';
import type { AlertDetail as Detail, AlertList, AlertRecord } from '../../shared/alert/stored.js';

export type { CountRow, Occurrence } from '../../shared/alert/stored.js';

// The store's shapes: what callers get back, and the rows behind them.

export interface StoredAlert extends AlertRecord {
  /**
   * Raw flows or events behind the alert, newest last, at most MAX_SAMPLES. From
   * get(): the alert's latest samples; in a change record after an ingest: the
   * samples that came with that change.
   */
  samples: unknown[];
}

export type AlertDetail = Detail<StoredAlert>;

export interface IncomingEvent {
  id: string;
  payload: AlertPayload;
  /**
   * The JSON text the payload was parsed from, as the agent sent it. The Kafka
   * log writes it as it came instead of serialising the payload again (which
   * costs about what parsing it did); parsing it gives the payload back, so
   * every replica projects what the accepting one does.
   */
  text?: string;
  /** When a server received it (unix ms), if not now: a Kafka replica projects events another received. */
  receivedAt?: number;
}

export interface IngestResult {
  stored: number;
  duplicates: number;
  alerts: StoredAlert[];
}

export type ListResult = AlertList<StoredAlert>;

/** The record's fields an alerts row holds as they are; the row keeps JSON as text and times as unix ms. */
type KeptAsIs =
  | 'id'
  | 'fingerprint'
  | 'agent'
  | 'status'
  | 'source'
  | 'severity'
  | 'title'
  | 'description'
  | 'cluster'
  | 'namespace'
  | 'rule'
  | 'count'
  | 'events'
  | 'seq';

export interface AlertRow extends Pick<AlertRecord, KeptAsIs> {
  severity_rank: number;
  policies: string;
  labels: string;
  details: string;
  /** The search text the alert opened with (alert_search), as the main full-text index has it. */
  search_text?: string;
  first_seen: number;
  last_seen: number;
  created_at: number;
  updated_at: number;
  last_received_at: number;
  clock_skew: number;
  /** event_no of the occurrence that set the severity. */
  severity_event: number;
}

export type NarrowRow = Omit<AlertRow, 'title' | 'description' | 'policies' | 'labels' | 'details' | 'search_text'>;
export type TextRow = Pick<AlertRow, 'id' | 'title' | 'description' | 'policies' | 'labels' | 'details'>;

/** How many of the latest events (with their samples) each alert keeps. */
export const OCCURRENCES_KEPT = 20;
/** An event stamped further than this after its receipt comes from a fast clock. */
export const CLOCK_SKEW_MS = 5 * 60_000;
/** last_received_at is written when it moved this much: repeats then seldom touch its index. */
export const RECEIVED_PRECISION_MS = 60_000;
/** The occurrence that set an alert's severity, once the ring has moved past it, lives in this slot. */
export const PINNED_SLOT = -1;
