import { sleep } from '../../shared/retry/backoff.js';
import { type Applied, applyObject, type DryRun, FIELD_MANAGER, reasonOf } from './apply-object.js';
import type { ManifestFile } from './decode.js';
import { type InventoryPolicy, type InventoryRef, readInventory, writeInventory } from './inventory.js';
import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import { VerdictError } from '../../shared/errors.js';
import type { KubeApi } from './kube/api.js';
import { indexLive } from './live-index.js';
import type { Discovery } from './kube/discovery.js';
import { describeId, idKey, idOf, type ManifestObject, parseIdKey } from './objects.js';
import { plan } from './plan.js';
import { CONCURRENCY, inPool } from './pool.js';
import { type Propagation, prune } from './prune.js';
import { describeNotReady, waitFor } from './wait.js';

// One synchronisation of one commit: plan -> apply wave by wave (waiting for
// Current between waves) -> prune -> inventory. It returns what happened to
// every object; it throws only when the sync could not run at all (a file
// that does not decode, a dependency cycle, the API server unreachable) or
// was cancelled.

export interface SyncSettings {
  defaultNamespace: string;
  dryRun: DryRun;
  prune: boolean;
  pruneTimeoutMs: number;
  propagation: Propagation;
  inventoryPolicy: InventoryPolicy;
  reconcileTimeoutMs: number;
}

export interface ObjectResult {
  /** As people read it: "apps/Deployment shop/web". */
  object: string;
  source?: string;
  action: 'created' | 'configured' | 'unchanged' | 'pruned' | 'kept' | 'failed' | 'skipped';
  reason?: string;
}

export interface SyncResult {
  commit: string;
  dryRun: DryRun;
  applied: number;
  /** Of the applied objects, those the API server changed (configured) or created. */
  changed: number;
  unchanged: number;
  pruned: number;
  failed: number;
  durationMs: number;
  objects: ObjectResult[];
}

type SyncDeps = {
  api: KubeApi;
  discovery: Discovery;
  inventory: InventoryRef;
  signal?: AbortSignal;
  /** Kept by the caller across syncs of one project (apply-object.ts's lastApplied). */
  lastApplied?: Map<string, { hash: string; resourceVersion: string }>;
};

export async function synchronize(files: readonly ManifestFile[], commit: string, s: SyncSettings, o: SyncDeps): Promise<SyncResult> {
  try {
    return await run(files, commit, s, o);
  } catch (e) {
    // A cancelled request fails with its own AbortError: the caller's reason says why.
    if (o.signal?.aborted) throw o.signal.reason ?? e;
    throw e;
  }
}

async function run(files: readonly ManifestFile[], commit: string, s: SyncSettings, o: SyncDeps): Promise<SyncResult> {
  const started = Date.now();
  const { api, discovery, inventory, signal } = o;
  // A file that does not decode or a bad depends-on: VERDICT_MANIFEST_INVALID, the sync cannot run.
  const p = await plan(files, s.defaultNamespace, discovery, signal);
  const results: ObjectResult[] = p.invalid.map((i) => ({ object: i.object, source: `${i.source}#${i.index}`, action: 'failed', reason: i.message }));
  const prior = await readInventory(api, inventory, signal);
  const write = s.dryRun === 'none';
  // Recorded before anything is applied: an agent stopped mid-sync must not leave objects no inventory knows.
  // What the inventory holds as far as this sync knows; each write of 1,000 keys is a server-side apply the
  // API server merges key by key, so one that would change nothing is not sent.
  let recorded = prior;
  // The result of objects applied ahead of their wave (the inventory's Namespace), used when the wave comes.
  const early = new Map<string, Applied>();
  const applyCtx = {
    api,
    discovery,
    ...(o.lastApplied ? { lastApplied: o.lastApplied } : {}),
    inventoryId: inventory.id,
    policy: s.inventoryPolicy,
    dryRun: s.dryRun,
    signal,
  };
  // Nothing to apply (globs that match nothing yet, only invalid objects): nothing to record, and a default_namespace
  // another project creates later is not needed yet.
  if (write && p.applying.size > 0 && !(prior && [...p.applying].every((k) => prior.has(k)))) {
    const all = new Set([...(prior ?? []), ...p.applying]);
    try {
      await writeInventory(api, inventory, all, FIELD_MANAGER, signal);
    } catch (e) {
      if (kubeApiStatus(e) !== 404) throw e;
      // Its namespace is one this commit creates: as cli-utils' InvAddTask, that Namespace is applied first, then the
      // inventory is written, then the rest. Only the Namespace is ever in the cluster before the inventory lists it,
      // for the time of one request: neither request is cancelled, so a cancel cannot fall between the two.
      const ns = p.waves.flat().find((m) => m.object.apiVersion === 'v1' && m.object.kind === 'Namespace' && m.object.metadata.name === inventory.namespace);
      if (!ns) throw e;
      const { signal: _, ...uncancelled } = applyCtx;
      const a = await applyObject(ns, uncancelled);
      if (a.action === 'failed')
        throw new VerdictError(
          'VERDICT_KUBE_API',
          `cannot create Namespace ${inventory.namespace} (${ns.source}#${ns.index}), where the inventory ConfigMap ${inventory.namespace}/${inventory.name} is kept: ${a.reason}; fix what the API server says (often the agent's permission to create namespaces), or create the namespace yourself`,
          { cause: e },
        );
      await writeInventory(api, inventory, all, FIELD_MANAGER);
      if (signal?.aborted) throw signal.reason ?? new Error('Synchronization was canceled');
      early.set(idKey(idOf(ns.object)), a);
    }
    recorded = all;
  }
  const unwritten = new Set<string>();
  const refusedByPolicy = new Set<string>();
  for (const wave of p.waves) {
    if (signal?.aborted) break;
    await refreshNewKinds(wave, discovery, s.dryRun === 'none' ? 20 : 1, signal);
    const known = await indexLive(api, discovery, wave, signal);
    const applied = await inPool(wave, CONCURRENCY, async (m) => early.get(idKey(idOf(m.object))) ?? applyObject(m, { ...applyCtx, known }), signal);
    // Objects a cancelled pool never took have no result: the sync ends as cancelled below.
    if (signal?.aborted) break;
    const live = [];
    for (let i = 0; i < wave.length; i++) {
      const m = wave[i]!;
      const a: Applied = applied[i]!;
      const key = idKey(idOf(m.object));
      if (a.unwritten) unwritten.add(key);
      if (a.policyRefused) refusedByPolicy.add(key);
      results.push({ object: describeId(idOf(m.object)), source: `${m.source}#${m.index}`, action: a.action, ...(a.reason ? { reason: a.reason } : {}) });
      if (a.live && s.dryRun === 'none') live.push(a.live);
    }
    if (live.length === 0) continue;
    const waited = await waitFor('Current', live, { api, discovery, timeoutMs: s.reconcileTimeoutMs, signal });
    for (const n of waited.notReady) {
      // lastApplied spares the next apply of an object nobody changed, and with it the wait: only one seen Current may be spared.
      o.lastApplied?.delete(idKey(idOf(n.object)));
      const name = describeId(idOf(n.object));
      const r = results.find((x) => x.object === name);
      // A Failed object ends the wait for itself at once (as cli-utils'); the others ran out of time.
      const timedOut = n.status.status === 'Failed' ? '' : ` (reconcile_timeout ${s.reconcileTimeoutMs} ms)`;
      if (r) Object.assign(r, { action: 'failed', reason: `${describeNotReady('Current', n)}${timedOut}` });
    }
  }
  if (signal?.aborted) throw signal.reason ?? new Error('Synchronization was canceled');

  // As cli-utils' InvSetTask: what was applied, and of what failed, was skipped or is invalid (its live object not
  // pruned meanwhile), what the inventory held already; an object nothing was written for is not recorded anew.
  let keep = new Set([...p.applying].filter((k) => !unwritten.has(k)));
  for (const k of p.keys) if (prior?.has(k)) keep.add(k);
  if (s.prune && prior) {
    const gone = [...prior].filter((k) => !p.keys.has(k));
    const outcomes = await prune(gone, {
      api,
      discovery,
      inventoryId: inventory.id,
      propagation: s.propagation,
      timeoutMs: s.pruneTimeoutMs,
      dryRun: s.dryRun,
      inUse: namespacesOf(p.keys, inventory.namespace),
      signal,
    });
    for (const x of outcomes) {
      if (x.action !== 'gone')
        results.push({ object: describeId(x.id), action: x.action === 'pruned' ? 'pruned' : x.action, ...(x.reason ? { reason: x.reason } : {}) });
      if (x.retain) keep.add(x.key);
    }
  } else if (prior) {
    // Without pruning, what the inventory held stays ours.
    keep = new Set([...prior, ...keep]);
  }
  // Objects another inventory owns (refused by the policy) are not ours to record.
  for (const k of refusedByPolicy) keep.delete(k);
  const same = recorded !== undefined && recorded.size === keep.size && [...keep].every((k) => recorded.has(k));
  if (write && (recorded || keep.size > 0) && !same) await writeInventory(api, inventory, keep, FIELD_MANAGER, signal);

  const count = (...a: ObjectResult['action'][]) => results.filter((r) => a.includes(r.action)).length;
  return {
    commit,
    dryRun: s.dryRun,
    applied: count('created', 'configured', 'unchanged'),
    changed: count('created', 'configured'),
    unchanged: count('unchanged'),
    pruned: count('pruned'),
    failed: count('failed'),
    durationMs: Date.now() - started,
    objects: results,
  };
}

/**
 * Custom resources whose CRD an earlier wave just applied: discovery is read
 * again until it serves them (it lags a moment behind Established).
 */
async function refreshNewKinds(wave: readonly ManifestObject[], discovery: Discovery, attempts: number, signal?: AbortSignal): Promise<void> {
  const missing = () => [...new Set(wave.filter((m) => !discovery.lookup(m.object.apiVersion, m.object.kind)).map((m) => m.object.apiVersion))];
  // A dry run never creates the CRD: one look is all there is to see.
  for (let attempt = 0; attempt < attempts && missing().length && !signal?.aborted; attempt++) {
    if (attempt > 0) await sleep(250, signal);
    await discovery.load(missing(), signal, true);
  }
}

export function summary(r: SyncResult): Record<string, unknown> {
  // No commit_id: the worker logs under a child logger that has it, and pino would write the key twice.
  return {
    applied: r.applied,
    changed: r.changed,
    unchanged: r.unchanged,
    pruned: r.pruned,
    failed: r.failed,
    duration_ms: r.durationMs,
    ...(r.dryRun !== 'none' ? { dry_run: r.dryRun } : {}),
  };
}

export { reasonOf };

/** The namespaces a commit's objects are in, and the inventory's: pruning must not delete them with their contents. */
function namespacesOf(keys: ReadonlySet<string>, inventoryNamespace: string): Set<string> {
  const out = new Set([inventoryNamespace]);
  for (const k of keys) {
    const ns = parseIdKey(k)?.namespace;
    if (ns) out.add(ns);
  }
  return out;
}
