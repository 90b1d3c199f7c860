import type { Tunnel } from '../../agent/tunnel/connection.js';
import { GitOpsClient, type SyncReport as WireReport } from '../../gen/verdict/gitops.js';
import type { Logger } from '../../shared/log/logger.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { SyncReport } from './worker.js';

// The agent's end of ReportSync: each worker's report goes to the server, the
// latest per project only (a newer sync makes an unsent report moot), again
// and again with backoff while the server is away. Syncing never waits for it.

const MAX_OBJECTS = 200;

/** The wire form of a worker's report: counts, and the objects that matter (failed, or corrected after drift). */
export function toWire(r: SyncReport, finishedAt = new Date()): WireReport {
  const res = r.result;
  const objects = (res?.objects ?? [])
    .filter((o) => o.action === 'failed' || (r.driftCorrected && (o.action === 'configured' || o.action === 'created')))
    .slice(0, MAX_OBJECTS)
    .map((o) => ({ object: o.object, source: o.source ?? '', action: o.action, reason: o.reason ?? '' }));
  return {
    project_id: r.projectId,
    commit_id: r.commit,
    ok: r.ok,
    error: r.error ?? '',
    applied: res?.applied ?? 0,
    changed: res?.changed ?? 0,
    unchanged: res?.unchanged ?? 0,
    pruned: res?.pruned ?? 0,
    failed: res?.failed ?? 0,
    duration_ms: res?.durationMs ?? 0,
    drift_corrected: r.driftCorrected,
    objects,
    finished_at: finishedAt.toISOString(),
  };
}

export class SyncReporter {
  private readonly pending = new Map<string, WireReport>();
  private wake: (() => void) | undefined;
  private readonly client: GitOpsClient;

  constructor(
    private readonly tunnel: Tunnel,
    private readonly o: { log: Logger; backoff: BackoffOptions },
  ) {
    this.client = new GitOpsClient(tunnel.target, tunnel.credentials, tunnel.options);
  }

  offer(r: SyncReport): void {
    this.pending.set(r.projectId, toWire(r));
    this.wake?.();
  }

  private send(r: WireReport): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.reportSync(r, this.tunnel.metadata(), { deadline: Date.now() + 30_000 }, (err) => (err ? reject(err) : resolve()));
    });
  }

  async run(signal: AbortSignal): Promise<void> {
    try {
      await retryLoop(
        {
          backoff: this.o.backoff,
          signal,
          onBackoff: (delay, e) =>
            this.o.log.warn(
              { error: this.tunnel.describe(e), retry_in_ms: delay },
              'GitOps: failed to report a sync to the server; will send the latest again',
            ),
        },
        async (progress) => {
          while (this.pending.size === 0 && !signal.aborted) {
            await new Promise<void>((resolve) => {
              const done = () => {
                this.wake = undefined;
                signal.removeEventListener('abort', done);
                resolve();
              };
              this.wake = done;
              signal.addEventListener('abort', done, { once: true });
            });
          }
          const [project, report] = this.pending.entries().next().value ?? [];
          if (signal.aborted || project === undefined || !report) return 'done';
          await this.send(report);
          if (this.pending.get(project) === report) this.pending.delete(project);
          progress();
          return 'now';
        },
      );
    } finally {
      this.client.close();
    }
  }
}
