import type { Validator } from '../shared/config/schema.js';

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
}

export type ServerModuleConfig<M> = M extends ServerModule<string, infer C> ? C : never;
