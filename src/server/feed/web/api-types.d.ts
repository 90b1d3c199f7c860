// The feed API's JSON as the page reads it: GET /api/v1/alerts, /alerts/:id,
// /alerts/counts and the stream's messages. The server's schemas
// (src/server/feed/schemas.ts, alertView in alerts-routes.ts) are the
// definition; these types follow them by hand, because this check cannot load
// the server's modules: even a type import brings in what they import
// (better-sqlite3, grpc-js) and with it Node's globals, so page code using
// Buffer or process would pass. The payload's own parts come from
// src/shared/alert/payload.ts itself, which imports nothing.
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

// GET /api/v1/agents and /agents/:name (src/server/agents/routes.ts; GitOps'
// part from src/modules/gitops/sync-status.ts, the agent's SyncReport of
// proto/verdict/gitops.proto and what the server adds). Followed by hand too:
// test/feed/page.browser.test.ts compares them with the server's types.

export interface ConfigFinding {
  file: string;
  line: number;
  path: string;
  message: string;
}

export interface AgentConfig {
  /** The commit this server last sent the agent; null when only invalid commits were seen. */
  commit_id: string | null;
  warnings: ConfigFinding[];
  /** A later commit that does not validate; the agent keeps running commit_id. */
  invalid?: { commit_id: string; error: string };
  updated_at: string;
}

export interface AgentConnection {
  connected: boolean;
  /** Connected: since the first open call; not: since the last one ended; null: no call since the server started. */
  since: string | null;
  version: string | null;
}

export interface SyncObject {
  object: string;
  source: string;
  action: string;
  reason: string;
}

export interface ProjectSync {
  /** Empty: the configuration project. */
  project_id: string;
  commit_id: string;
  ok: boolean;
  /** Why the sync could not run at all; empty otherwise. */
  error: string;
  applied: number;
  changed: number;
  unchanged: number;
  pruned: number;
  failed: number;
  duration_ms: number;
  drift_corrected: boolean;
  /** The failed objects (with the API server's reason), and the corrected ones after drift. */
  objects: SyncObject[];
  finished_at: string;
  received_at: string;
  last_ok_commit: string | null;
  last_ok_at: string | null;
}

export interface Agent {
  name: string;
  created_at: string;
  connection: AgentConnection;
  /** Null until the agent opens its configuration stream to this server. */
  config: AgentConfig | null;
  modules: string[];
  /** Optional: a server without the module has no part for it. */
  module_status: { gitops?: { projects: ProjectSync[] } };
}

export interface AgentList {
  agents: Agent[];
}
