// The feed API's JSON as the page reads it: GET /api/v1/alerts, /alerts/:id,
// /alerts/counts and the stream's messages. The server's schemas
// (src/server/feed/schemas.ts, alertView in alerts-routes.ts) are the
// definition; these types follow them by hand. The payload's own parts come
// from src/shared/alert/payload.ts itself.
import type { CiliumDetails, FalcoDetails, PolicyRef, Severity } from '../../../shared/alert/payload.js';

export type { CiliumDetails, EndpointSummary, FalcoDetails, Severity } from '../../../shared/alert/payload.js';

export type Status = 'triggered' | 'acknowledged' | 'resolved' | 'ignored';
export type Source = import('../../../shared/alert/payload.js').AlertSource;

export interface Alert {
  id: number;
  status: Status;
  source: Source;
  severity: Severity;
  title: string;
  description: string;
  agent: string;
  cluster: string;
  namespace: string;
  policies: PolicyRef[];
  rule: string;
  labels: Record<string, string>;
  count: number;
  events: number;
  first_seen: string;
  last_seen: string;
  created_at: string;
  updated_at: string;
  /** When the server received the latest event, to the minute. */
  last_received_at: string;
  /** An occurrence was stamped more than 5 minutes after its receipt (a fast clock); times are as given. */
  clock_skew?: true;
  fingerprint: string;
  seq: number;
  details: { cilium?: CiliumDetails; falco?: FalcoDetails };
  /** In the detail only: the latest raw samples, oldest first. */
  samples?: unknown[];
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

export interface StatusChange {
  from: Status;
  to: Status;
  actor: string;
  at: string;
}

export interface AlertDetail {
  alert: Alert;
  /** The latest occurrences, newest first. */
  occurrences: Occurrence[];
  /** The occurrence that set the severity; it may also be among the latest. */
  severity_occurrence?: Occurrence;
  history: StatusChange[];
}

export interface AlertPage {
  alerts: Alert[];
  next_cursor: string | null;
  stream_cursor: number;
}

export interface Counts {
  by: string;
  counts: { key: string; alerts: number; events: number }[];
}

export type StreamMessage = { type: 'alerts'; cursor: number; alerts?: Alert[]; removed?: number[] } | { type: 'live'; cursor: number };
