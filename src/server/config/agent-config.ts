import { field, obj, oneOf, parseYamlConfig, type Parsed, type Validator } from '../../shared/config/schema.js';
import type { ServerModuleConfig } from '../module.js';
import { serverModules } from '../modules.js';

// Schema of .gitlab/agents/<name>/config.yaml: the core's own keys, plus one
// block per module taken from the server's module registry. Names and defaults
// follow the GitLab agent's schema where the two overlap, so existing files keep working.

const coreShape = {
  observability: field(obj({
    logging: field(obj({ level: field(oneOf(['debug', 'info', 'warn', 'error'] as const), { default: 'info' }) })),
  })),
};

type Module = (typeof serverModules)[number];
type CoreConfig = typeof coreShape extends Record<string, { v: Validator<infer T> }> ? { observability?: T } : never;
export type AgentConfig = CoreConfig & { [M in Module as M['name']]?: ServerModuleConfig<M> };

const moduleShape = Object.fromEntries(serverModules.map((m) => [m.name, field(m.config as Validator<unknown>)]));

export const agentConfigSchema = obj({ ...coreShape, ...moduleShape }, { open: true }) as unknown as Validator<AgentConfig>;

/** Size limit of the original agent for config.yaml. */
export const MAX_CONFIG_BYTES = 128 * 1024;

export function parseAgentConfig(text: string, file: string): Parsed<AgentConfig> {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    throw new Error(`${file}: configuration is ${Buffer.byteLength(text)} bytes, over the ${MAX_CONFIG_BYTES}-byte limit; move policies out of config.yaml into files selected by cilium.policies`);
  }
  // An empty file is a valid config with every module off.
  if (text.trim() === '') return { value: {} as AgentConfig, warnings: [] };
  return parseYamlConfig(text, file, agentConfigSchema);
}
