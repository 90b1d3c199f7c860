import type { PolicyRef } from './payload.js';

// The alert as the server keeps it: what its store returns, what the feed API
// sends as JSON (alertView in src/server/feed/alerts-routes.ts), the part
// webhooks send, and what the web page reads. It imports nothing but
// payload.ts, so the page's type check (src/server/feed/web) can use it without
// loading the server's modules and, through them, Node's globals.

export const STATUSES = ['triggered', 'acknowledged', 'resolved', 'ignored'] as const;
export type AlertStatus = (typeof STATUSES)[number];

/** An alert without its samples: one entry of the feed's list. */
export interface AlertRecord {
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
  /** Occurrences, as counted by the agents (one event may fold several). */
  count: number;
  /** Events received for this alert. */
  events: number;
  first_seen: string;
  last_seen: string;
  created_at: string;
  updated_at: string;
  /** When the server received the latest event, to the minute: what retention ages the alert by. */
  last_received_at: string;
  /** Present when an occurrence was stamped more than CLOCK_SKEW_MS (5 minutes) after its receipt; its times are kept as given. */
  clock_skew?: true;
  seq: number;
}

/** One event of an alert as received, with the samples it brought. */
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

export interface StatusChange {
  from: AlertStatus;
  to: AlertStatus;
  actor: string;
  at: string;
}

/** One alert (A: the store's, with its samples, or the page's reading of the API) with its latest events and status history. */
export interface AlertDetail<A> {
  alert: A;
  /** The latest occurrences, newest first. */
  occurrences: Occurrence[];
  /** The occurrence that set the severity (the highest of the alert's), kept when the ring has moved past it; it may also be among the latest. */
  severity_occurrence?: Occurrence;
  /** Status changes, oldest first. */
  history: StatusChange[];
}

/** A page of alerts; next_cursor is null on the last. */
export interface AlertList<A> {
  alerts: A[];
  next_cursor: string | null;
}

/** Alerts and their occurrences for one value of a dimension (severity, rule, ...). */
export interface CountRow {
  key: string;
  alerts: number;
  events: number;
}
