import type * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import type { ScopedRoute } from './feed/auth.js';
import type { Validator } from '../shared/config/schema.js';
import type { ServerConfig } from '../shared/config/server-config.js';
import type { Logger } from '../shared/log/logger.js';
import type { ProjectPollers } from './config/project-poller.js';
import type { DB } from '../shared/sqlite/open.js';
import type { AgentRecord, AgentRegistry, AuthenticatedAgent } from './agents/agent-registry.js';
import type { AlertSource } from '../shared/alert/payload.js';
import type { IncomingEvent } from './store/types.js';
import type { TlsMaterial } from './tunnel/tls.js';

/** A call on the agent API, of any streaming shape. */
export type AgentCall = grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>;

export interface AdmitOptions {
  /**
   * The call is one of many an agent opens per unit of work (one per proxied
   * request in the CI tunnel), not a connection: the per-token limit on
   * connection attempts (60, then 1/s) does not count it. Failed
   * authentications are still limited.
   */
  perCall?: boolean;
}

/** What the server core gives a module's server part to serve agents with. */
export interface ServerModuleContext {
  /** The server's configuration as loaded; a module reads its own settings from it. */
  readonly config: ServerConfig;
  /** Logger with the module's mod_name. */
  readonly log: Logger;
  /**
   * Admits an agent call exactly as the core's own services do (version check,
   * token, rate limits) and tracks it, so revoking the token ends it. Returns
   * the agent, or undefined when the call was refused: the refusal has been
   * sent and the handler must return.
   */
  admit(call: AgentCall, rpc: string, opts?: AdmitOptions): AuthenticatedAgent | undefined;
  /**
   * Calls `end` once the agent runs another configuration project's
   * config.yaml than `project` (it was moved, and the new project's
   * configuration reached it), or, with `commit`, another commit than that
   * one, for a stream that serves from the configuration project and should
   * be asked for again; returns the untracker.
   */
  followConfigProject(agent: string, project: string, end: () => void, commit?: string): () => void;
  /**
   * The configuration project whose config.yaml the agent runs: the one this server last sent it (or found it
   * running) a configuration from, while its configuration stream is here or since it came back running that commit;
   * undefined otherwise (a restarted server, another replica, a restarted agent, an agent registered again under the
   * name). A moved agent keeps running its last configuration until the new project has a valid config.yaml for it,
   * and what is decided or served "from the configuration project" must come from that one meanwhile.
   */
  configProjectOf(agent: Pick<AgentRecord, 'id' | 'name' | 'created_at'>): string | undefined;
  /**
   * The configuration the agent runs, when this server knows it (as configProjectOf): the configuration project and the
   * commit of its config.yaml last sent to the agent. What is read "from the configuration project" for the agent reads
   * that commit: after a move the agent no longer follows the old project, and a commit pushed there since must
   * neither grant nor apply nor prune anything.
   */
  servedConfigOf(agent: Pick<AgentRecord, 'id' | 'name' | 'created_at'>): { project: string; commit: string } | undefined;
}

/** A gRPC service a module adds to the agent API (plain gRPC and gRPC-in-WebSocket alike). */
export interface ModuleGrpcService {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * Alerts a module raises on the server (rather than an agent sending them
 * through its spool), under the store's rules: events are folded by
 * fingerprint as an agent's are, and resolving is a status change with an
 * actor, recorded in the alert's history. On a Kafka replica both go through
 * the log, as the tunnel's alerts and the feed's status changes do.
 */
export interface ModuleAlerts {
  /** Stores events as if the agent had sent them. */
  raise(agent: string, events: IncomingEvent[]): Promise<void>;
  /** Resolves the agent's triggered or acknowledged alerts of this source with one of these fingerprints; returns how many. */
  resolve(agent: string, source: AlertSource, fingerprints: readonly string[], actor: string): Promise<number>;
}

/** A module's part of an agent in GET /api/v1/agents and /api/v1/agents/:name (under `modules.<name>`). */
export interface ModuleAgentStatus {
  /** The JSON schema of the value, exact: it goes into the OpenAPI document and fastify serialises by it. */
  schema: Record<string, unknown>;
  /** The value for this agent; `config` is the server's, as start() got it. */
  view(config: ServerConfig, agent: string): unknown;
}

/**
 * A source of alerts a module raises, and what the alerts of it are called where they leave Verdict: the webhook
 * formats read it through the registry (src/server/modules.ts), so the core names no module. Receivers route on these
 * names (Alertmanager's alertname above all): once released, they are kept.
 */
export interface ModuleAlertSource {
  /** The alerts' `source` (one of ALERT_SOURCES, which the payload both sides share lists). */
  readonly source: AlertSource;
  /**
   * Whether the module's agent part sends these through the tunnel. Otherwise the server raises them itself
   * (`alerts` in start()) and refuses them from an agent, which could forge them.
   */
  readonly fromAgent: boolean;
  /** GitLab's `monitoring_tool`. */
  readonly monitoringTool: string;
  /** Alertmanager's `alertname` label of one alert. */
  alertname(alert: { readonly rule: string }): string;
  /** The pods or hosts an alert is about, read from its details (GitLab's `hosts`); none without it. */
  hosts?(details: Readonly<Record<string, unknown>>): string[];
}

/** What a module's start() gets from the server core. */
export interface ServerModuleStartContext {
  /** The server's configuration; the same object grpcServices' context carries, so a module can key per-server state on it. */
  readonly config: ServerConfig;
  readonly log: Logger;
  /** The server's database; a module keeps its own tables (migrate() under its own scope). */
  readonly db: DB;
  readonly agents: AgentRegistry;
  /** The server's TLS material, when it serves TLS. */
  readonly tls: TlsMaterial | undefined;
  readonly alerts: ModuleAlerts;
  /**
   * The pollers of configuration projects the agent API streams configurations from: one `git rev-parse` per project
   * and interval for the whole server, and their `commit` event when a new commit is seen (logged once, by them).
   */
  readonly pollers: ProjectPollers;
}

/** What a module's adminRoutes() gets: routes are added before the HTTP listener listens. */
export interface ServerModuleAdminContext {
  readonly config: ServerConfig;
  readonly log: Logger;
  readonly db: DB;
  /** Spread into every admin route's options: a feed token with scope admin (401, 403 otherwise). */
  readonly admin: ScopedRoute;
}

/** What a module started beside the agent API; closed before the server's own listeners. */
export interface StartedServerModule {
  close(): Promise<void>;
}

/**
 * The server part of a module. Every module has one, because the server
 * validates config.yaml before any agent sees it: the module's block schema is
 * the least a server part holds.
 */
export interface ServerModule<N extends string = string, C = unknown> {
  /** The module's key in config.yaml (also its mod_name in logs). */
  readonly name: N;
  readonly config: Validator<C>;
  /**
   * Files of the configuration project the agent part reads, selected by the
   * module's own block; the server sends them with the configuration.
   * `path` names the config key the globs came from, for error messages.
   */
  projectFiles?(block: C): { path: string; globs: string[] };
  /** gRPC services the module serves to its agent part through the tunnel. */
  grpcServices?(ctx: ServerModuleContext): ModuleGrpcService[];
  /** Listeners or loops the module runs beside the agent API, started once it is served (undefined: nothing to run with this configuration). */
  start?(ctx: ServerModuleStartContext): Promise<StartedServerModule | undefined>;
  /** The alerts the module raises (from its agent part or on the server), and their names in webhooks. */
  readonly alertSource?: ModuleAlertSource;
  /** Routes the module adds to the admin HTTP API (under /api/v1/admin/, in the OpenAPI document like the core's). */
  adminRoutes?(app: FastifyInstance, ctx: ServerModuleAdminContext): void;
  /**
   * What the module adds to each agent in the core's agents API. Agents are the
   * core's, so the routes are too; a module only fills in its part.
   */
  agentStatus?: ModuleAgentStatus;
}

export type ServerModuleConfig<M> = M extends ServerModule<string, infer C> ? C : never;
