import { bool, duration, field, list, obj, oneOf, str, type Validator } from '../../shared/config/schema.js';

// The `gitops` block of config.yaml, with the original agent's keys and defaults.

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

export const gitopsBlock = obj({ manifest_projects: field(list(manifestProject), { default: [] }) });

export type GitopsConfig = typeof gitopsBlock extends Validator<infer T> ? T : never;
