import { explainKubeError } from '../../agent/kubernetes/explain.js';
import type { Logger } from '../../shared/log/logger.js';
import { Backoff, type BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { InventoryRef } from './inventory.js';
import type { KubeApi } from './kube/api.js';
import { Discovery } from './kube/discovery.js';
import type { ObjectsBatch } from './objects-client.js';
import { type SyncResult, type SyncSettings, summary, synchronize } from './sync.js';

// One worker per manifest project: the latest batch from the server wins.
// A new commit cancels the sync in progress, or the wait before a failed one's
// retry (the commit that fixes it is applied at once, not after up to a
// minute); a failed sync is retried after a backoff (10 s to 1 min, the
// original's), which starts again from 10 s for a new commit; a good one is
// applied again every resync interval, which corrects drift made behind
// GitOps' back.

/** What GitOps needs of the API server, for a 403: the ClusterRole the agent ships with. */
const GITOPS_RBAC =
  "the agent's identity needs get, list, create, patch and delete on the kinds its manifest projects hold, and on the inventory ConfigMap (the ClusterRole verdict-agent-gitops in deploy/agent/agent.yaml grants them; docs/gitops.md, Permissions)";

export interface SyncReport {
  projectId: string;
  commit: string;
  ok: boolean;
  /** The sync could not run at all (a file that does not decode, the API server unreachable). */
  error?: string;
  result?: SyncResult;
  /** A periodic re-apply of the same commit changed objects: someone changed them in the cluster. */
  driftCorrected: boolean;
}

export interface WorkerOptions {
  projectId: string;
  settings: SyncSettings;
  api: KubeApi;
  inventory: InventoryRef;
  log: Logger;
  resyncIntervalMs: number;
  backoff: BackoffOptions;
  onReport?: (r: SyncReport) => void;
}

/**
 * A failed sync's retry: the original's 10 s, doubling, to 1 min. Without jitter: the retry goes to the agent's own
 * cluster, where no other agent's retries meet it, and the delay logged is the one documented.
 */
export const SYNC_BACKOFF: BackoffOptions = { initialMs: 10_000, maxMs: 60_000, factor: 2, jitter: false };

/**
 * The project's stream from the server and the sync reports, reopened after an error: up to 10 s, doubling to up
 * to 1 min, at random (full jitter, at least 1 s), so the agents of a restarted server do not all call it at once.
 */
export const STREAM_BACKOFF: BackoffOptions = { initialMs: 10_000, maxMs: 60_000, factor: 2, jitter: true };

/** The abort reason of a sync a newer batch replaced (not an error anyone sees): compared by identity. */
const CANCELED = new Error('Synchronization was canceled');

export class ProjectWorker {
  private latest: ObjectsBatch | undefined;
  private wake: (() => void) | undefined;
  private current: AbortController | undefined;
  private readonly lastApplied = new Map<string, { hash: string; resourceVersion: string }>();

  constructor(private readonly o: WorkerOptions) {}

  /** A new batch from the server: it replaces any not yet applied and cancels the sync in progress. */
  offer(batch: ObjectsBatch): void {
    this.latest = batch;
    this.current?.abort(CANCELED);
    this.wake?.();
  }

  private waitForChange(ms: number | undefined, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.wake = undefined;
        signal.removeEventListener('abort', done);
        clearTimeout(t);
        resolve();
      };
      const t = ms === undefined ? undefined : setTimeout(done, ms);
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    const { log } = this.o;
    const backoff = new Backoff(this.o.backoff);
    let synced: string | undefined;
    let tried: string | undefined;
    // A new batch ends the backoff's wait (offer() wakes waitForChange); the backoff's state carries over.
    await retryLoop(
      {
        backoff,
        signal,
        sleep: (ms, s) => this.waitForChange(ms, s),
        onBackoff: (delay) => log.info({ retry_in_ms: delay }, 'GitOps: retrying synchronization after a delay'),
      },
      async (progress) => {
        while (!this.latest && !signal.aborted) await this.waitForChange(undefined, signal);
        const batch = this.latest;
        if (!batch || signal.aborted) return 'done';
        // A new commit's failures back off from the start again.
        if (batch.commit !== tried) {
          tried = batch.commit;
          progress();
        }
        const resync = synced === batch.commit;
        const abort = new AbortController();
        this.current = abort;
        const stop = () => abort.abort(signal.reason);
        signal.addEventListener('abort', stop, { once: true });
        const l = log.child({ commit_id: batch.commit });
        l.info({ resync }, 'Synchronizing objects');
        try {
          const result = await synchronize(batch.files, batch.commit, this.o.settings, {
            api: this.o.api,
            discovery: new Discovery(this.o.api),
            inventory: this.o.inventory,
            signal: abort.signal,
            lastApplied: this.lastApplied,
          });
          const driftCorrected = resync && result.changed > 0;
          if (driftCorrected) {
            l.warn(
              { objects: result.objects.filter((x) => x.action === 'configured' || x.action === 'created').map((x) => x.object) },
              'GitOps: drift corrected',
            );
          }
          const failures = result.objects.filter((x) => x.action === 'failed');
          this.o.onReport?.({ projectId: this.o.projectId, commit: batch.commit, ok: failures.length === 0, result, driftCorrected });
          if (failures.length) {
            l.error(
              { ...summary(result), error: failures.map((f) => `${f.object}${f.source ? ` (${f.source})` : ''}: ${f.reason}`).join('; ') },
              'Synchronization failed',
            );
            // A new batch that came as this sync ended, before the backoff's wait began (which offer() ends), is tried now.
            return this.latest === batch ? 'backoff' : 'now';
          }
          l.info(summary(result), 'Objects synchronized');
          synced = batch.commit;
          progress();
        } catch (e) {
          if (abort.signal.reason === CANCELED) {
            l.info('Synchronization was canceled');
            return 'now';
          }
          if (signal.aborted) return 'done';
          const error = explainKubeError(e, this.o.api.endpoint, GITOPS_RBAC);
          l.error({ error }, 'Synchronization failed');
          this.o.onReport?.({ projectId: this.o.projectId, commit: batch.commit, ok: false, error, driftCorrected: false });
          return this.latest === batch ? 'backoff' : 'now';
        } finally {
          signal.removeEventListener('abort', stop);
          this.current = undefined;
        }
        // Synced: wait for a new commit, or the time to apply this one again.
        if (this.latest === batch) await this.waitForChange(this.o.resyncIntervalMs, signal);
        return 'now';
      },
    );
  }
}
