import type * as grpc from '@grpc/grpc-js';
import { kubeConnection } from '../../agent/kubernetes/connection.js';
import type { AgentModule } from '../../agent/module.js';
import type { ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { errText } from '../../shared/log/logger.js';
import { sleep, type BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { CiAccessConfig } from './config.js';
import { ApiForwarder, type AgentCall } from './forward.js';
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

export interface CiAccessAgentOptions {
  /** --kubeconfig (else KUBECONFIG, else the pod's service account). */
  kubeconfig?: string;
  backoff?: BackoffOptions;
}

export function createCiAccessModule(o: CiAccessAgentOptions = {}): AgentModule<CiAccessConfig> {
  return {
    name: 'ci_access',
    async run(_block, ctx, signal) {
      const kube = kubeConnection(o.kubeconfig ? { kubeconfig: o.kubeconfig } : {});
      const tunnel = ctx.tunnel;
      if (!tunnel) throw new Error("the CI tunnel needs the agent's tunnel to the server, which this context lacks");
      // Its own connection (other options than the alert and config clients'), with HTTP/2 windows
      // wider than the 64 KiB default, so a large list is not paced by round trips.
      const client = new TunnelClient(tunnel.target, tunnel.credentials, { ...tunnel.options, 'grpc-node.flow_control_window': WINDOW_BYTES });
      const forwarder = new ApiForwarder(kube, ctx.log);
      let active = 0;
      // Calls open and waiting for a request.
      let idle = 0;
      let allIdle: (() => void) | undefined;
      ctx.log.info({ kubernetes_api_server: kube.server, credentials: kube.source, idle_calls: IDLE_CALLS }, 'CI tunnel: ready');
      const slot = () =>
        retryLoop(
          {
            backoff: o.backoff ?? BACKOFF,
            signal,
            onBackoff: (delay, e) => ctx.log.error({ error: tunnel.describe(e), retry_in_ms: delay }, 'CI tunnel: call to the server failed'),
          },
          async (progress) => {
            const call: AgentCall = client.connect(tunnel.metadata());
            idle++;
            const header = await new Promise<ServerFrame['msg'] | undefined>((resolve, reject) => {
              const onAbort = () => call.cancel();
              signal.addEventListener('abort', onAbort, { once: true });
              const settle = () => signal.removeEventListener('abort', onAbort);
              call.on('metadata', (md: grpc.Metadata) => tunnel.checkServerVersion(md, ctx.log));
              call.once('data', (f: ServerFrame) => {
                settle();
                resolve(f.msg);
              });
              call.once('error', (e) => {
                settle();
                if (signal.aborted) resolve(undefined);
                else reject(e);
              });
              call.once('end', () => {
                settle();
                resolve(undefined);
              });
            }).finally(() => idle--);
            if (header?.$case !== 'header') return signal.aborted ? 'done' : 'backoff';
            progress();
            // Served beside the next idle call; a restart of the module (a new ci_access block) lets it finish.
            active++;
            const served = forwarder
              .forward(call, header.value)
              .catch((e: unknown) => ctx.log.error({ error: errText(e), ci_job_id: header.value.job_id }, 'CI tunnel: request failed'))
              .finally(() => {
                if (--active === 0) allIdle?.();
              });
            // A new call is a stream, its admission on the server and TLS records both ways: while enough
            // calls wait, it is opened once this request is answered (most take a few ms) rather than on
            // that request's path, and after REPLACE_AFTER_MS for one that lasts (a watch, logs -f).
            if (idle >= IDLE_CALLS / 2) await Promise.race([served, sleep(REPLACE_AFTER_MS, signal)]);
            return 'now';
          },
        );
      await Promise.all(Array.from({ length: IDLE_CALLS }, slot));
      if (active > 0) await new Promise<void>((resolve) => (allIdle = resolve));
      forwarder.close();
      client.close();
    },
  };
}
