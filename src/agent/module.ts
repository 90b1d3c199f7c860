import type { ProjectFile } from '../gen/verdict/agent.js';
import type { Logger } from '../shared/log/logger.js';
import type { DB } from '../shared/sqlite/open.js';
import type { AlertAggregator } from './alerts/aggregator.js';
import type { Tunnel } from './tunnel/connection.js';

/** What every agent module gets from the agent core. */
export interface ModuleContext {
  log: Logger;
  db: DB;
  /** Where modules hand alert occurrences; durable once add() returns. */
  alerts: AlertAggregator;
  dataDir: string;
  agentName: string;
  /** Files of the configuration project delivered with this configuration. */
  files: readonly ProjectFile[];
  /**
   * The agent's way to the server (target, credentials, token metadata), for a
   * module whose server part serves it a gRPC service. Absent only where a
   * module runs alone (unit tests).
   */
  tunnel?: Tunnel;
}

/**
 * The agent part of a module. It runs while its block is present in
 * config.yaml. The manager restarts it only when its own block (or the project
 * files it declares it uses) changes: modules see the latest configuration only.
 * The block arrives validated and defaulted by the module's server part.
 */
export interface AgentModule<C = never> {
  /** The module's key in config.yaml (also its mod_name in logs). */
  readonly name: string;
  /** Whether this module reads ctx.files (then a change of files restarts it). */
  readonly usesFiles?: boolean;
  /**
   * Whether the module starts from the configuration kept in agent.db when the
   * agent starts, before the server serves one. Only for modules that work
   * without the server and lose something when they wait for it (an alert input:
   * Falco does not retry). A module that acts on what the server sends (GitOps
   * applies and prunes the manifests it gets) starts from a served configuration
   * only: the server answers for the configuration it last served, which is not
   * the kept one once config.yaml changed while the agent was down.
   */
  readonly startsFromKept?: boolean;
  /**
   * Runs until `signal` aborts (the block changed or went away, or the agent
   * is stopping). Work that must not be cut by a restart (a CI watch in
   * flight) may outlive it: run() then returns it as Lingering, and the agent
   * lets it finish, ending it only when the agent process stops.
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a module that leaves nothing behind is an async function returning Promise<void>.
  run(block: C, ctx: ModuleContext, signal: AbortSignal): Promise<void | Lingering>;
}

/** Work a module's run() left behind when it returned. */
export interface Lingering {
  /** Settles when the work is over and what it held is closed. */
  readonly done: Promise<void>;
  /** Ends the work now; `done` settles soon after. */
  end(): void;
}
