import type { ModuleGrpcService, ServerModuleContext } from '../../server/module.js';
import type { Http2Session } from 'node:http2';
import type { AgentTunnels, TunnelCall } from './agent-tunnels.js';
import { TunnelService } from './wire.js';

// KubernetesApiTunnel.Connect on the agent API: each call an agent opens is
// admitted as every agent call is (version, token, rate limits; revoking the
// token ends it) and offered to the proxy as a way to the agent's cluster.
export function tunnelService(ctx: ServerModuleContext, tunnels: AgentTunnels): ModuleGrpcService {
  return {
    definition: TunnelService,
    implementation: {
      connect: (call: TunnelCall) => {
        // One call per proxied request: a busy CI job must not run into the connection-attempt limit.
        const agent = ctx.admit(call, 'KubernetesApiTunnel.Connect', { perCall: true });
        if (!agent) return;
        widenWindows(call);
        tunnels.add(agent.id, call);
      },
    },
  };
}

const WINDOW_BYTES = 8 << 20;
const widened = new WeakSet<object>();

/**
 * Responses flow agent → server: with HTTP/2's 64 KiB default window the
 * server would pace a large list by round trips. grpc-js has no server option
 * for it, so the window is widened on the call's session (its internals: when
 * they move, this does nothing and the default stays).
 */
function widenWindows(call: TunnelCall): void {
  let c = (call as unknown as { call?: unknown }).call as { stream?: { session?: Http2Session }; nextCall?: unknown } | undefined;
  for (let i = 0; i < 4 && c; i++) {
    const session = c.stream?.session;
    if (session) {
      if (widened.has(session)) return;
      widened.add(session);
      try {
        session.settings({ initialWindowSize: WINDOW_BYTES });
        session.setLocalWindowSize(WINDOW_BYTES);
      } catch {
        // A closing session: nothing to widen.
      }
      return;
    }
    c = c.nextCall as typeof c;
  }
}
