import { field, list, obj, str, type Validator } from '../../shared/config/schema.js';

// The `ci_access` block of config.yaml: which projects and groups may reach the
// cluster through this agent, as in the original agent.

const accessEntry = obj({
  id: field(str({ nonEmpty: true }), { required: true }),
  default_namespace: field(str(), { default: '' }),
  access_as: field(obj({}, { open: true })),
});

export const ciAccessBlock = obj({
  projects: field(list(accessEntry), { default: [] }),
  groups: field(list(accessEntry), { default: [] }),
});

export type CiAccessConfig = typeof ciAccessBlock extends Validator<infer T> ? T : never;
