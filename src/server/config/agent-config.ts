import { logLevel } from '../../shared/config/gitlab-agent.js';
import { bool, ConfigError, field, obj, parseYamlConfig, str, unused, type Parsed, type Validator } from '../../shared/config/schema.js';
import type { ServerModuleConfig } from '../module.js';
import { serverModules } from '../modules.js';
import { gitlabOnlySections } from './gitlab-sections.js';

// Schema of .gitlab/agents/<name>/config.yaml: the core's own keys, one block
// per module taken from the server's module registry, and the GitLab agent's
// sections Verdict has no module for. Names, types and defaults follow the
// GitLab agent's schema of every version where the two overlap, so existing
// files keep working: keys Verdict does not act on are warnings, never errors.
//
// Unknown keys: Verdict's own blocks (cilium, falco) are closed, as only
// Verdict writes keys there and an unknown one is a typo; everything from the
// GitLab agent's schema is open (a warning), as GitLab keeps adding keys.

const coreShape = {
  observability: field(
    obj(
      {
        logging: field(
          obj(
            {
              level: field(logLevel, { default: 'info' }),
              grpc_level: field(unused(logLevel, 'Verdict logs gRPC at observability.logging.level')),
            },
            { open: true },
          ),
        ),
        google_profiler: field(
          unused(
            obj({ enabled: field(bool()), project_id: field(str()), credentials_file: field(str()), debug_logging: field(bool()) }),
            'Verdict has no Google Cloud Profiler integration',
          ),
        ),
      },
      { open: true },
    ),
  ),
};

type Module = (typeof serverModules)[number];
type CoreConfig = typeof coreShape extends Record<string, { v: Validator<infer T> }> ? { observability?: T } : never;
export type AgentConfig = CoreConfig & { [M in Module as M['name']]?: ServerModuleConfig<M> };

// Built on first use: modules' server parts import this file's loader, so the
// registry may still be initialising while this module loads.
let schema: Validator<AgentConfig> | undefined;
function agentConfigSchema(): Validator<AgentConfig> {
  if (!schema) {
    const modules = Object.fromEntries(serverModules.map((m) => [m.name, field(m.config as Validator<unknown>)]));
    schema = obj({ ...gitlabOnlySections, ...coreShape, ...modules }, { open: true }) as unknown as Validator<AgentConfig>;
  }
  return schema;
}

/** Size limit of the original agent for config.yaml. */
export const MAX_CONFIG_BYTES = 128 * 1024;

export function parseAgentConfig(text: string, file: string): Parsed<AgentConfig> {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    const message = `configuration is ${Buffer.byteLength(text)} bytes, over the ${MAX_CONFIG_BYTES}-byte limit; move policies out of config.yaml into files selected by cilium.policies`;
    throw new ConfigError([{ file, path: '', line: 0, message }]);
  }
  // An empty file is a valid config with every module off.
  if (text.trim() === '') return { value: {} as AgentConfig, warnings: [] };
  return parseYamlConfig(text, file, agentConfigSchema());
}
