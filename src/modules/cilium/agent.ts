import type { Flow } from '../../gen/flow/flow.js';
import { errText } from '../../shared/log/logger.js';
import { flowToJson } from './flow-json.js';
import { CILIUM_SEVERITY, flowFingerprint, flowTime, flowToAlert } from './to-alert.js';
import { DropPairFilter } from './drop-pairs.js';
import { PolicyEngine } from './policy/engine.js';
import { PolicyWatcher } from './kube-watch.js';
import { kubeConnection, kubernetesConfigured } from '../../agent/kubernetes/connection.js';
import { loadPolicyFiles, parseProjectPolicies, policyWarningMessages } from './policy/parse.js';
import { FlowCursor } from './flow-cursor.js';
import { followDroppedFlows } from './relay-client.js';
import type { CiliumConfig } from './config.js';
import type { AgentModule } from '../../agent/module.js';

/** How long flows wait for the first list of the cluster's policies. */
const POLICY_SYNC_WAIT_MS = 60_000;
// `kubernetes_policies: on` without credentials: cilium, unlike GitOps and the CI tunnel, can do without the cluster.
const NO_CREDENTIALS = 'run the agent in the cluster, pass --kubeconfig, or set cilium.kubernetes_policies: off';

/** Alerts stored per transaction at most (as the Falco inbox does). */
const BATCH = 20_000;
/**
 * How long an alert waits for others to share its transaction. Relay's flows
 * come a socket read at a time, every few milliseconds under a flood
 * (h2c-call.ts), so a per-turn commit would still be hundreds of transactions
 * a second; the longer the wait, the more repeats of a group fold into one
 * row update. Alerts are folded in a window of seconds anyway,
 * and until the commit the cursor is not saved, so a crash reads the flows
 * again rather than losing them.
 */
const BATCH_MS = 500;

/**
 * A flow as an alert's sample: its JSON (hubble observe -o json form) is built
 * when the sample is first serialised, and once. Most flows of a flood repeat
 * an open alert whose samples are taken, and never need it.
 */
class FlowSample {
  private flow: Flow | undefined;
  private json: unknown;

  constructor(flow: Flow) {
    this.flow = flow;
  }

  toJSON(): unknown {
    if (this.flow) {
      this.json = flowToJson(this.flow);
      this.flow = undefined;
    }
    return this.json;
  }
}

export interface CiliumModuleOptions {
  /** Local policy files or directories (agent flag --policies). */
  policyPaths: readonly string[];
  /** Agent flag --kubeconfig; without it KUBECONFIG, then the pod's service account. */
  kubeconfig?: string;
}

/**
 * The Cilium alert module: dropped flows from Hubble Relay, matched against the
 * labelled policies, become alerts. Runs while config.yaml has a `cilium` block.
 */
export function createCiliumModule(opts: CiliumModuleOptions): AgentModule<CiliumConfig> {
  return {
    name: 'cilium',
    usesFiles: true,
    // Drops happen whether or not the server is reachable; they are spooled until it is.
    startsFromKept: true,
    async run(block, ctx, signal) {
      const { log } = ctx;
      const local = await loadPolicyFiles([...opts.policyPaths]);
      const project = parseProjectPolicies(ctx.files);
      for (const e of [...local.errors, ...project.errors]) log.error({ error: e.message }, 'Skipped a policy that cannot be parsed; the others keep working');
      for (const w of policyWarningMessages([...local.policies, ...project.policies]))
        log.warn({ warning: w }, 'Part of a policy does nothing or cannot be judged from flows; the warning names the file and field');
      let watched: typeof local.policies = [];
      const build = () =>
        new PolicyEngine([...local.policies, ...project.policies, ...watched], {
          alertNamespaces: block.alert_namespaces,
          alertClusterwide: block.alert_clusterwide,
        });
      let engine = build();
      log.info({ policies: engine.size, from_files: local.policies.length, from_project: project.policies.length }, 'Loaded network policies');

      let watcher: PolicyWatcher | undefined;
      const kube = opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {};
      if (block.kubernetes_policies === 'on' || (block.kubernetes_policies === 'auto' && kubernetesConfigured(kube))) {
        // Policies applied in the cluster count too: allows add up across all of them.
        const connection = kubeConnection({ ...kube, noCredentials: NO_CREDENTIALS });
        log.info({ server: connection.server, credentials: connection.source }, 'Watching network policies in the Kubernetes API');
        watcher = new PolicyWatcher({
          connection,
          log,
          onChange: (snap) => {
            for (const e of snap.errors)
              log.error({ error: e.message }, 'Skipped a policy from the Kubernetes API that cannot be parsed; the others keep working');
            watched = snap.policies;
            engine = build();
            log.info({ policies: engine.size, from_kubernetes: watched.length }, 'Updated network policies from the Kubernetes API');
          },
        });
        void watcher.run().catch((e: unknown) => log.error({ error: errText(e) }, 'Watching policies in the Kubernetes API failed'));
        // Drops judged before the cluster's policies are listed would be blamed on a partial set
        // (the original agent lost them): wait for the first list. The flow cursor then resumes
        // from the last flow handled, so what Relay still buffers is not skipped.
        if (!(await watcher.waitReady(POLICY_SYNC_WAIT_MS, signal)) && !signal.aborted) {
          log.warn(
            { waited_ms: POLICY_SYNC_WAIT_MS },
            'Policies from the Kubernetes API are not listed yet; matching flows with the policies loaded so far until they are',
          );
        }
      }

      const cursor = new FlowCursor(ctx.db, block.hubble_relay_address);
      const pairs = new DropPairFilter();
      // Group commit: each alert is folded into the aggregator's memory at once
      // (staged: a repeat costs no more than the fold, and leaves nothing for
      // the garbage collector to move), and what was staged within BATCH_MS (at
      // most BATCH alerts) is stored in one transaction. The cursor is saved
      // only in that transaction, so it never passes a flow whose alert is not
      // durable; if it fails, the aggregator forgets what was staged and puts
      // its memory back to what is stored.
      const staging = ctx.alerts.staging();
      let timer: NodeJS.Timeout | undefined;
      // Alerts that could not be stored: the cursor (already moved past their
      // flows in memory) is no longer saved, and the module stops and is
      // restarted by the manager, resuming from the last saved position so the
      // flows come again.
      let storeFailed: Error | undefined;
      const stopFollowing = new AbortController();
      const commit = () => {
        clearTimeout(timer);
        timer = undefined;
        if (storeFailed || (staging.size === 0 && !cursor.unsaved)) return;
        const alerts = staging.size;
        try {
          staging.commit(() => cursor.persist());
        } catch (e) {
          storeFailed = e instanceof Error ? e : new Error(errText(e));
          cursor.hold();
          log.error(
            { error: errText(e), alerts },
            'Failed to store the alerts for dropped flows; restarting the module to read the flows again from the last saved position',
          );
          stopFollowing.abort();
        }
      };
      // Flows that raise nothing move the cursor too; saving it once a second is enough for them.
      const persistTimer = setInterval(commit, 1000);
      persistTimer.unref();
      const onAbort = () => stopFollowing.abort();
      if (signal.aborted) stopFollowing.abort();
      else signal.addEventListener('abort', onAbort, { once: true });

      const onFlow = (flow: Flow) => {
        if (pairs.isPairedRepeat(flow)) return;
        let att;
        try {
          att = engine.attribute(flow);
        } catch (e) {
          log.error({ error: errText(e), flow_uuid: flow.uuid }, 'Policy matching failed for a flow; skipping it');
          return;
        }
        if (!att || att.policies.length === 0) return;
        if (storeFailed) return;
        // A repeat that changes only an alert's count and last_seen (of one staged since the last
        // commit, or of an open group whose samples are all taken) is counted without building its payload.
        const fp = flowFingerprint(flow, att, block.cluster_name);
        if (!staging.bump(fp, flowTime(flow), CILIUM_SEVERITY[att.reason], block.dedup_window))
          staging.stage([flowToAlert(flow, att, block.cluster_name, new FlowSample(flow), fp)], block.dedup_window);
        if (staging.size >= BATCH) commit();
        else timer ??= setTimeout(commit, BATCH_MS);
      };

      try {
        await followDroppedFlows({
          address: block.hubble_relay_address,
          backoff: { initialMs: block.reconnect.initial_backoff, maxMs: block.reconnect.max_backoff, factor: 2, jitter: true, resetAfterMs: 600_000 },
          cursor,
          log,
          signal: stopFollowing.signal,
          onFlow,
          onStreamEnd: commit,
        });
      } finally {
        signal.removeEventListener('abort', onAbort);
        watcher?.stop();
        clearInterval(persistTimer);
        commit();
        staging.close();
      }
      if (storeFailed && !signal.aborted) throw new Error(`storing an alert failed: ${storeFailed.message}`);
    },
  };
}
