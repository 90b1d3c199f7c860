// The feed API's JSON as the page reads it: GET /api/v1/alerts, /alerts/:id,
// /alerts/counts and the stream's messages. The alert's shapes come from
// src/shared/alert/stored.ts and payload.ts, which the server's store and
// routes use too; they import nothing else, so this check never loads the
// server's modules and Node's globals (Buffer, process) stay unknown to the
// page. Where the page's reading differs from the stored alert (narrower
// source, severity and details; samples in the detail only), Alert says how.
import type { AlertPayload, AlertSource, Severity } from '../../../shared/alert/payload.js';
import type { AlertDetail as Detail, AlertList, AlertRecord, AlertStatus, CountRow } from '../../../shared/alert/stored.js';

export type { CiliumDetails, EndpointSummary, FalcoDetails, Severity } from '../../../shared/alert/payload.js';
export type { Occurrence } from '../../../shared/alert/stored.js';

export type Status = AlertStatus;
export type Source = AlertSource;

/** The server stores source, severity and details as any string or object; what it accepts are these. */
export interface Alert extends Omit<AlertRecord, 'source' | 'severity' | 'details'> {
  source: Source;
  severity: Severity;
  details: Pick<AlertPayload, 'cilium' | 'falco'>;
  /** In the detail only: the latest raw samples, oldest first. */
  samples?: unknown[];
}

export type AlertDetail = Detail<Alert>;

export interface AlertPage extends AlertList<Alert> {
  /** The stream's cursor when the page was read: a stream opened with it misses nothing that changed after. */
  stream_cursor: number;
}

export interface Counts {
  by: string;
  counts: CountRow[];
}

export type StreamMessage = { type: 'alerts'; cursor: number; alerts?: Alert[]; removed?: number[] } | { type: 'live'; cursor: number };

// GET /api/v1/agents and /agents/:name (src/server/agents/routes.ts; GitOps'
// part from src/modules/gitops/sync-status.ts, the agent's SyncReport of
// proto/verdict/gitops.proto and what the server adds). Written out here,
// since the server's come from src/gen/verdict/gitops.ts, which loads grpc-js:
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

/** A sync under way: a commit the server sent the agent, which the agent has not reported on yet. */
export interface ProjectSyncing {
  /** Empty: the configuration project. */
  project_id: string;
  commit_id: string;
  /** When the server sent the commit. */
  since: string;
}

export interface AgentGitopsStatus {
  /** Each manifest project's last sync the agent reported. */
  projects: ProjectSync[];
  /** A first sync, or a newer commit than in projects; a stopped agent keeps its entry until it reports again. */
  syncing: ProjectSyncing[];
}

export interface Agent {
  name: string;
  created_at: string;
  connection: AgentConnection;
  /** Null until the agent opens its configuration stream to this server. */
  config: AgentConfig | null;
  modules: string[];
  /** Optional: a server without the module has no part for it. */
  module_status: { gitops?: AgentGitopsStatus };
}

export interface AgentList {
  agents: Agent[];
}
