import type { ProjectFile } from '../../gen/verdict/agent.js';
import type { AgentConfig } from '../../shared/config/agent-config.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertAggregator } from '../alert/aggregator.js';

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
}

export type ModuleName = keyof AgentConfig & string;

/**
 * An agent module runs while its block is present in config.yaml. The manager
 * restarts it only when its own block (or the project files it declares it
 * uses) changes: modules see the latest configuration only.
 */
export interface AgentModule<K extends ModuleName = ModuleName> {
  readonly name: K;
  /** Whether this module reads ctx.files (then a change of files restarts it). */
  readonly usesFiles?: boolean;
  run(block: NonNullable<AgentConfig[K]>, ctx: ModuleContext, signal: AbortSignal): Promise<void>;
}
