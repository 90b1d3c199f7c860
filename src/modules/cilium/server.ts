import type { ServerModule } from '../../server/module.js';
import { ciliumBlock, type CiliumConfig } from './config.js';

/** Server part of the Cilium module: sends the policy files its block selects with the configuration. */
export const ciliumServer: ServerModule<'cilium', CiliumConfig> = {
  name: 'cilium',
  config: ciliumBlock,
  projectFiles: (block) => ({ path: 'cilium.policies', globs: block.policies.map((p) => p.glob) }),
};
