import { falcoBlock } from './falco-config.js';
import { bool, duration, field, int, list, obj, oneOf, parseYamlConfig, str, type Parsed, type Validator } from './schema.js';

// Schema of .gitlab/agents/<name>/config.yaml. Names and defaults follow the
// GitLab agent's schema where the two overlap, so existing files keep working.

const hostPort = str({ pattern: /^[^\s:/]+(?:\.[^\s:/]+)*:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, hint: 'host:port, e.g. hubble-relay.kube-system.svc.cluster.local:80' });

const ciliumBlock = obj({
  hubble_relay_address: field(hostPort, { required: true }),
  /** Policy manifests inside the configuration project, by glob. */
  policies: field(list(obj({ glob: field(str({ nonEmpty: true }), { required: true }) })), { default: [] }),
  /**
   * Namespaces whose policies may raise alerts for this agent. The project label
   * of the original was user-controlled; namespace ownership is not.
   * Empty means every namespace (and clusterwide policies).
   */
  alert_namespaces: field(list(str({ nonEmpty: true })), { default: [] }),
  /** Whether clusterwide policies may raise alerts for this agent. */
  alert_clusterwide: field(bool(), { default: true }),
  cluster_name: field(str(), { default: '' }),
  /**
   * Also list and watch policies from the Kubernetes API server: "auto" does
   * so when the agent runs in a pod (KUBERNETES_SERVICE_HOST is set).
   */
  kubernetes_policies: field(oneOf(['auto', 'on', 'off'] as const), { default: 'auto' }),
  reconnect: field(obj({
    initial_backoff: field(duration({ min: 1 }), { default: 10_000 }),
    max_backoff: field(duration({ min: 1 }), { default: 300_000 }),
  }), { default: { initial_backoff: 10_000, max_backoff: 300_000 } }),
  /** Window in which repeats of the same drop fold into one alert with a count. */
  dedup_window: field(duration({ min: 0 }), { default: 10_000 }),
});

const manifestProject = obj({
  id: field(str({ nonEmpty: true }), { required: true }),
  default_namespace: field(str(), { default: 'default' }),
  paths: field(list(obj({ glob: field(str({ nonEmpty: true }), { required: true }) })), { default: [{ glob: '**/*.{yaml,yml,json}' }] }),
  reconcile_timeout: field(duration(), { default: 3_600_000 }),
  dry_run_strategy: field(oneOf(['none', 'client', 'server'] as const), { default: 'none' }),
  prune: field(bool(), { default: true }),
  prune_timeout: field(duration(), { default: 3_600_000 }),
  prune_propagation_policy: field(oneOf(['orphan', 'background', 'foreground'] as const), { default: 'foreground' }),
  inventory_policy: field(oneOf(['must_match', 'adopt_if_no_inventory', 'adopt_all'] as const), { default: 'must_match' }),
});

const accessEntry = obj({
  id: field(str({ nonEmpty: true }), { required: true }),
  default_namespace: field(str(), { default: '' }),
  access_as: field(obj({}, { open: true })),
});

export const agentConfigSchema = obj(
  {
    cilium: field(ciliumBlock),
    falco: field(falcoBlock),
    gitops: field(obj({ manifest_projects: field(list(manifestProject), { default: [] }) })),
    observability: field(obj({
      logging: field(obj({ level: field(oneOf(['debug', 'info', 'warn', 'error'] as const), { default: 'info' }) })),
    })),
    ci_access: field(obj({
      projects: field(list(accessEntry), { default: [] }),
      groups: field(list(accessEntry), { default: [] }),
    })),
  },
  { open: true },
);

type ValidatorOut<V> = V extends Validator<infer T> ? T : never;
export type AgentConfig = ValidatorOut<typeof agentConfigSchema>;
export type CiliumConfig = NonNullable<AgentConfig['cilium']>;

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

// int is part of the DSL other blocks use; re-exported for module schemas.
export { int };
