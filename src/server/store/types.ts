import type { PolicyRef } from '../../shared/alert/payload.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import type { AlertStatus } from './alert-query.js';

// The store's shapes: what callers get back, and the rows behind them.

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
  /**
   * Raw flows or events behind the alert, newest last, at most MAX_SAMPLES. From
   * get(): the alert's latest samples; in a change record after an ingest: the
   * samples that came with that change.
   */
  samples: unknown[];
  /** Occurrences, as counted by the agents (one event may fold several). */
  count: number;
  /** Events received for this alert. */
  events: number;
  first_seen: string;
  last_seen: string;
  created_at: string;
  updated_at: string;
  /** When this server received the latest event, to the minute: what retention ages the alert by. */
  last_received_at: string;
  /** Present when an occurrence was stamped more than CLOCK_SKEW_MS after its receipt; its times are kept as given. */
  clock_skew?: true;
  seq: number;
}

export interface Occurrence {
  event_no: number;
  event_id: string;
  received_at: string;
  count: number;
  first_seen: string;
  last_seen: string;
  severity: string;
  description: string;
  labels: Record<string, string>;
  samples: unknown[];
}

export interface AlertDetail {
  alert: StoredAlert;
  /** The latest occurrences, newest first. */
  occurrences: Occurrence[];
  /** The occurrence that set the severity (the highest of the alert's), kept when the ring has moved past it. */
  severity_occurrence?: Occurrence;
  /** Status changes, oldest first. */
  history: StatusChange[];
}

export interface StatusChange {
  from: AlertStatus;
  to: AlertStatus;
  actor: string;
  at: string;
}

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

export interface ListResult {
  alerts: StoredAlert[];
  next_cursor: string | null;
}

export interface CountRow {
  key: string;
  alerts: number;
  events: number;
}

export interface AlertRow {
  id: number;
  fingerprint: string;
  agent: string;
  status: AlertStatus;
  source: string;
  severity: string;
  severity_rank: number;
  title: string;
  description: string;
  cluster: string;
  namespace: string;
  policies: string;
  rule: string;
  labels: string;
  details: string;
  /** The search text the alert opened with (alert_search), as the main full-text index has it. */
  search_text?: string;
  count: number;
  events: number;
  first_seen: number;
  last_seen: number;
  created_at: number;
  updated_at: number;
  last_received_at: number;
  clock_skew: number;
  /** event_no of the occurrence that set the severity. */
  severity_event: number;
  seq: number;
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
