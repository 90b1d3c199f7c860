import { KubernetesApiTunnelService } from '../../gen/verdict/kubernetes_api.js';
import type { ModuleGrpcService, ServerModuleContext } from '../../server/module.js';
import type { AgentTunnels, TunnelCall } from './agent-tunnels.js';

// KubernetesApiTunnel.Connect on the agent API: each call an agent opens is
// admitted as every agent call is (version, token, rate limits; revoking the
// token ends it) and offered to the proxy as a way to the agent's cluster.
export function tunnelService(ctx: ServerModuleContext, tunnels: AgentTunnels): ModuleGrpcService {
  return {
    definition: KubernetesApiTunnelService,
    implementation: {
      connect: (call: TunnelCall) => {
        // One call per proxied request: a busy CI job must not run into the connection-attempt limit.
        const agent = ctx.admit(call, 'KubernetesApiTunnel.Connect', { perCall: true });
        if (agent) tunnels.add(agent.id, call);
      },
    },
  };
}
