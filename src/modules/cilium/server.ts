import type { ServerModule } from '../../server/module.js';
import type { CiliumDetails } from '../../shared/alert/payload.js';
import { ciliumBlock, type CiliumConfig } from './config.js';

/** Server part of the Cilium module: sends the policy files its block selects with the configuration. */
export const ciliumServer: ServerModule<'cilium', CiliumConfig> = {
  name: 'cilium',
  config: ciliumBlock,
  projectFiles: (block) => ({ path: 'cilium.policies', globs: block.policies.map((p) => p.glob) }),
  alertSource: {
    source: 'cilium',
    fromAgent: true,
    monitoringTool: 'Verdict (Cilium)',
    // One name for every drop: receivers route on it, the policy and direction are labels of their own.
    alertname: () => 'CiliumPolicyDrop',
    hosts: (details) => {
      const d = details.cilium as Partial<CiliumDetails> | undefined;
      const out: string[] = [];
      for (const ep of [d?.source, d?.destination]) if (ep?.pod) out.push(ep.namespace ? `${ep.namespace}/${ep.pod}` : ep.pod);
      return out;
    },
  },
};
