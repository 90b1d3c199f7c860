import { createCiAccessModule } from '../modules/ci-access/agent.js';
import { createCiliumModule } from '../modules/cilium/agent.js';
import { falcoModule } from '../modules/falco/agent.js';
import { createGitopsModule } from '../modules/gitops/agent.js';
import { kubeConnection } from './kubernetes/connection.js';
import type { AgentModule } from './module.js';

/** Agent flags that modules read. */
export interface AgentModuleFlags {
  /** --policies: local policy files or directories (Cilium). */
  policyPaths: readonly string[];
  /** --kubeconfig: how to reach the Kubernetes API server outside a pod (else KUBECONFIG, else the pod's service account). */
  kubeconfig?: string;
}

// The agent's module registry: a module is added by writing src/modules/<name>/
// and naming its agent part here (and its server part in src/server/modules.ts).
export function agentModules(flags: AgentModuleFlags): AgentModule<never>[] {
  return [
    createCiliumModule({ policyPaths: flags.policyPaths, kubeconfig: flags.kubeconfig }),
    falcoModule,
    createGitopsModule({
      connect: () =>
        kubeConnection({
          ...(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}),
          // connection.ts's default advice is cilium's.
          noCredentials: 'run the agent in the cluster or pass --kubeconfig: GitOps applies its manifest projects to that cluster',
        }),
    }),
    createCiAccessModule(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {}),
  ] as AgentModule<never>[];
}
