import type * as grpc from '@grpc/grpc-js';
import { type KubeConnection, kubeConnection } from '../../agent/kubernetes/connection.js';
import type { AgentModule } from '../../agent/module.js';
import type { ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { settledWithin } from '../../shared/lifecycle/settled-within.js';
import { errText } from '../../shared/log/logger.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { CiAccessConfig } from './config.js';
import { ApiForwarder, type AgentCall, NoClusterForwarder } from './forward.js';
import { TunnelClient } from './wire.js';

// The agent part of the CI/CD tunnel: while config.yaml has a ci_access block,
// it keeps IDLE_CALLS Connect calls open to the server (the original's
// reverse tunnel); the server puts a kubectl request on one, and the agent
// opens the next at once while it forwards that request to the API server.
// Who may use the agent is the server's decision (it reads the same block);
// the agent applies the identity the server names and nothing else.

const WINDOW_BYTES = 8 << 20;

/** Calls waiting for requests: enough for a burst of kubectl's parallel discovery requests without a wait. */
export const IDLE_CALLS = 8;

/** How long a request that is still running may keep its call's replacement waiting (while half the calls or more are idle). */
const REPLACE_AFTER_MS = 50;

// After a failed call: a server restart should not keep CI jobs out for the agent's 10 s default.
const BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 60_000, factor: 2, jitter: true, resetAfterMs: 5 * 60_000 };

/** What to do without credentials, for the CI tunnel (connection.ts's default speaks of cilium). */
const NO_CREDENTIALS =
  "run the agent in the cluster (with its ServiceAccount, deploy/agent/agent.yaml) or pass --kubeconfig: the CI tunnel sends CI jobs' requests to that cluster's API server";

export interface CiAccessAgentOptions {
  /** --kubeconfig (else KUBECONFIG, else the pod's service account). */
  kubeconfig?: string;
  backoff?: BackoffOptions;
}

export function createCiAccessModule(o: CiAccessAgentOptions = {}): AgentModule<CiAccessConfig> {
  return {
    name: 'ci_access',
    async run(_block, ctx, signal) {
      let kube: KubeConnection | undefined;
      let noCluster: string | undefined;
      try {
        kube = kubeConnection({ ...(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {}), noCredentials: NO_CREDENTIALS });
      } catch (e) {
        noCluster = errText(e);
      }
      const tunnel = ctx.tunnel;
      if (!tunnel) throw new Error("the CI tunnel needs the agent's tunnel to the server, which this context lacks");
      // Its own connection (other options than the alert and config clients'), with HTTP/2 windows
      // wider than the 64 KiB default, so a large list is not paced by round trips.
      const client = new TunnelClient(tunnel.target, tunnel.credentials, { ...tunnel.options, 'grpc-node.flow_control_window': WINDOW_BYTES });
      // Without credentials the calls are still kept: CI jobs are answered that the cluster cannot be reached, and why.
      const forwarder = kube ? new ApiForwarder(kube, ctx.log) : new NoClusterForwarder(noCluster!);
      // Calls serving a request, for ending them when the agent stops.
      const serving = new Set<AgentCall>();
      // Calls open and waiting for a request.
      let idle = 0;
      let allIdle: (() => void) | undefined;
      // Calls waiting for a request; stopping the module cancels them. One listener on the signal for all: one
      // per wait would be IDLE_CALLS listeners and more, past EventTarget's warning at 10.
      const waiting = new Set<AgentCall>();
      const stop = () => {
        for (const c of waiting) c.cancel();
      };
      signal.addEventListener('abort', stop, { once: true });
      if (kube) ctx.log.info({ kubernetes_api_server: kube.server, credentials: kube.source, idle_calls: IDLE_CALLS }, 'CI tunnel: ready');
      else
        ctx.log.error(
          { error: noCluster, idle_calls: IDLE_CALLS },
          "CI tunnel: no Kubernetes credentials; CI jobs' requests are answered with this error until the agent is restarted with some",
        );
      const slot = () =>
        retryLoop(
          {
            backoff: o.backoff ?? BACKOFF,
            signal,
            onBackoff: (delay, e) =>
              tunnel.endedByShutdown(e)
                ? ctx.log.info({ reason: tunnel.describe(e), retry_in_ms: delay }, 'CI tunnel: the server ended a call as it shut down; reconnecting')
                : ctx.log.error({ error: tunnel.describe(e), retry_in_ms: delay }, 'CI tunnel: call to the server failed'),
          },
          async (progress) => {
            const call: AgentCall = client.connect(tunnel.metadata());
            call.on('metadata', (md: grpc.Metadata) => tunnel.checkServerVersion(md, ctx.log));
            // The wait for a request and the request's forwarding each act on errors with listeners of their
            // own; this one keeps an error that comes between them (kubectl gone while credentials are read)
            // from being thrown.
            call.on('error', () => undefined);
            let served = 0;
            for (;;) {
              idle++;
              const header = await nextHeader(call, signal, waiting).finally(() => idle--);
              if (header?.$case !== 'header') {
                if (signal.aborted) return 'done';
                // A call kept after a request and then ended by the server (one that takes a request per call,
                // or that was stopping): a new one at once; a call that never got a request: wait first.
                return served > 0 ? 'now' : 'backoff';
              }
              progress();
              served++;
              // Served beside the next idle call; a restart of the module (a new ci_access block) lets it finish.
              serving.add(call);
              // Whether this slot has moved on to a new call: then this one is ended after its request, not kept.
              let movedOn = false;
              let kept = false;
              const done = forwarder
                .forward(call, header.value, () => !movedOn && !signal.aborted)
                .then((k) => (kept = k))
                .catch((e: unknown) => ctx.log.error({ error: errText(e), ci_job_id: header.value.job_id }, 'CI tunnel: request failed'))
                .finally(() => {
                  serving.delete(call);
                  if (serving.size === 0) allIdle?.();
                });
              // A request that is answered soon (most take a few ms) leaves its call waiting for the next one:
              // no new stream, no admission on the server. One that lasts (a watch, logs -f), or one taken while
              // fewer than half the calls wait, gets a new call beside it, and its own is ended when it is over.
              if (idle >= IDLE_CALLS / 2) await settledWithin(done, REPLACE_AFTER_MS);
              if (!kept) {
                movedOn = true;
                return 'now';
              }
            }
          },
        );
      await Promise.all(Array.from({ length: IDLE_CALLS }, slot));
      signal.removeEventListener('abort', stop);
      const close = () => {
        forwarder.close();
        client.close();
      };
      if (serving.size === 0) {
        close();
        return;
      }
      // Requests in flight (a watch, logs -f) finish on their own calls, and the connection closes after the last;
      // the module does not wait for them: the part a new ci_access block starts, and every configuration after
      // it, would wait as long as a watch lasts (hours), with CI jobs refused meanwhile. They are ended only when
      // the agent stops: the server then answers kubectl with an error (a Status, or an ERROR event in a watch).
      const done = new Promise<void>((resolve) => {
        allIdle = () => {
          close();
          resolve();
        };
      });
      return {
        done,
        end: () => {
          ctx.log.warn({ requests: serving.size }, 'CI tunnel: ending the requests still in flight: the agent is stopping');
          for (const c of serving) c.cancel();
          forwarder.close();
        },
      };
    },
  };
}

/**
 * The first frame of the next request on the call (undefined when the call
 * ends first, or is cancelled because `signal` aborted); rejects when the
 * call fails. While it waits the call is in `waiting`, which the module
 * cancels on abort.
 */
function nextHeader(call: AgentCall, signal: AbortSignal, waiting: Set<AgentCall>): Promise<ServerFrame['msg'] | undefined> {
  return new Promise<ServerFrame['msg'] | undefined>((resolve, reject) => {
    const settle = () => {
      waiting.delete(call);
      call.off('data', onData);
      call.off('error', onError);
      call.off('end', onEnd);
    };
    const onData = (f: ServerFrame) => {
      settle();
      resolve(f.msg);
    };
    const onError = (e: Error) => {
      settle();
      if (signal.aborted) resolve(undefined);
      else reject(e);
    };
    const onEnd = () => {
      settle();
      resolve(undefined);
    };
    if (signal.aborted) {
      call.cancel();
      resolve(undefined);
      return;
    }
    waiting.add(call);
    call.on('data', onData);
    call.on('error', onError);
    call.on('end', onEnd);
    // A kept call was paused when its last request ended.
    call.resume();
  });
}
