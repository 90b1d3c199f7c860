import type { AgentModule, ModuleContext } from '../../agent/module.js';
import type { GitRefCF } from '../../gen/verdict/gitops.js';
import { Closers } from '../../shared/lifecycle/closers.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import type { GitopsConfig } from './config.js';
import { CONFIG_PROJECT_INVENTORY, type InventoryPolicy, inventoryRef } from './inventory.js';
import { updateLedger } from './project-ledger.js';
import { KubeApi, type KubeEndpoint } from './kube/api.js';
import { receiveObjects } from './objects-client.js';
import { SyncReporter } from './reporter.js';
import type { Propagation } from './prune.js';
import type { SyncSettings } from './sync.js';
import { ProjectWorker, STREAM_BACKOFF, SYNC_BACKOFF, type SyncReport } from './worker.js';

// The agent part of GitOps: per manifest project, a stream of commits from the
// server (receive) feeding one worker (decode -> plan -> apply -> wait ->
// prune -> report). The module restarts when its block changes; a project
// left out of the new block is simply not synchronised any more: its objects
// stay in the cluster, as with the original.

/** The original re-applies every 5 minutes; Verdict lets a project choose (resync_interval). */
export const DEFAULT_RESYNC_MS = 5 * 60_000;

export interface GitopsModuleOptions {
  /** The agent's connection to the Kubernetes API server (src/agent/kubernetes). */
  connect: () => KubeEndpoint;
  /** Where sync results go (the status reporter); tests listen here too. */
  onReport?: (r: SyncReport) => void;
  syncBackoff?: BackoffOptions;
  streamBackoff?: BackoffOptions;
}

/** One entry of gitops.manifest_projects. */
export type Project = NonNullable<GitopsConfig['manifest_projects']>[number] & { resync_interval?: number };

/** The ref as the wire names it (unset: the default branch). */
export function refOf(p: Project): GitRefCF | undefined {
  const r = p.ref as { branch?: string; tag?: string; commit?: string } | undefined;
  if (r?.commit) return { ref: { $case: 'commit', value: r.commit } };
  if (r?.tag) return { ref: { $case: 'tag', value: r.tag } };
  if (r?.branch) return { ref: { $case: 'branch', value: r.branch } };
  return undefined;
}

/** The inventory of an entry: a project listed without id (the configuration project) is named by CONFIG_PROJECT_INVENTORY. */
export function entryInventory(agentName: string, p: Project) {
  return inventoryRef(agentName, p.id || CONFIG_PROJECT_INVENTORY, p.default_namespace || 'default');
}

export function settingsOf(p: Project): SyncSettings {
  return {
    defaultNamespace: p.default_namespace || 'default',
    dryRun: (p.dry_run_strategy || 'none') as SyncSettings['dryRun'],
    // 14.0 development versions said no_prune; prune replaced it.
    prune: p.no_prune === undefined ? p.prune !== false : !p.no_prune,
    pruneTimeoutMs: p.prune_timeout ?? 3_600_000,
    propagation: (p.prune_propagation_policy || 'foreground') as Propagation,
    inventoryPolicy: (p.inventory_policy || 'must_match') as InventoryPolicy,
    reconcileTimeoutMs: p.reconcile_timeout ?? 3_600_000,
  };
}

export function createGitopsModule(opts: GitopsModuleOptions): AgentModule<GitopsConfig> {
  return {
    name: 'gitops',
    async run(block, ctx: ModuleContext, signal) {
      const tunnel = ctx.tunnel;
      if (!tunnel) throw new Error('GitOps needs the tunnel to the server, and this agent core gave the module none');
      const projects = (block.manifest_projects ?? []) as Project[];
      const inventoryOf = (p: Project) => entryInventory(ctx.agentName, p);
      for (const gone of updateLedger(
        ctx.db,
        projects.map((p) => ({ projectId: p.id ?? '', inventory: `${inventoryOf(p).namespace}/${inventoryOf(p).name}` })),
      )) {
        ctx.log.warn(
          { project_id: gone.projectId || '(configuration project)', inventory: gone.inventory },
          'GitOps: project removed from the configuration; its objects stay in the cluster (delete them, and the inventory ConfigMap, by hand if they should go)',
        );
      }
      if (projects.length === 0) {
        ctx.log.info('GitOps: no manifest projects configured');
        return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      }
      const closers = new Closers();
      const api = closers.add('Kubernetes API client', new KubeApi(opts.connect()), (a) => a.close());
      // Each sync's outcome goes to the server (sync status, gitops alerts) and to whoever listens here.
      const reporter = new SyncReporter(tunnel, { log: ctx.log, backoff: opts.streamBackoff ?? STREAM_BACKOFF });
      const onReport = (r: SyncReport) => {
        reporter.offer(r);
        opts.onReport?.(r);
      };
      try {
        await Promise.all([
          reporter.run(signal),
          ...projects.flatMap((p) => {
            const id = p.id ?? '';
            const log = ctx.log.child({ project_id: id || '(configuration project)' });
            const settings = settingsOf(p);
            const worker = new ProjectWorker({
              projectId: id,
              settings,
              api,
              inventory: inventoryOf(p),
              log,
              resyncIntervalMs: p.resync_interval ?? DEFAULT_RESYNC_MS,
              backoff: opts.syncBackoff ?? SYNC_BACKOFF,
              onReport,
            });
            return [
              worker.run(signal),
              receiveObjects(
                tunnel,
                { projectId: id, ref: refOf(p), globs: (p.paths ?? []).map((x) => x.glob) },
                {
                  backoff: opts.streamBackoff ?? STREAM_BACKOFF,
                  log,
                  signal,
                  onBatch: (b) => worker.offer(b),
                  // Reported as a sync that could not run (the sync status, its alert): otherwise only this log knew.
                  onRefused: (error) => onReport({ projectId: id, commit: '', ok: false, error, driftCorrected: false }),
                },
              ),
            ];
          }),
        ]);
      } finally {
        await closers.close();
      }
    },
  };
}
