import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { reasonOf, type DryRun } from './apply-object.js';
import { ownerOf } from './inventory.js';
import { ANNOTATION_OWNING_INVENTORY, describeId, keepOnRemove, type KubeObject, type ObjectId, parseIdKey } from './objects.js';
import { waitFor } from './wait.js';

// Objects the inventory holds and the commit no longer does are deleted, in
// the reverse of the apply order (namespaces and CRDs last) with the
// project's propagation policy, each kind group waited for until gone.
// Objects annotated on-remove: keep are left and released from the inventory;
// objects another inventory owns now are left to it. A Namespace that objects
// of the commit (or the inventory itself) still live in is not deleted, as
// cli-utils's LocalNamespacesFilter does: deleting it would take them with it.
// It stays in the inventory, so a later commit with nothing left in it
// deletes it.

export type Propagation = 'orphan' | 'background' | 'foreground';

export interface PruneOutcome {
  key: string;
  id: ObjectId;
  action: 'pruned' | 'kept' | 'gone' | 'skipped' | 'failed';
  reason?: string;
  /** Still ours: stays in the inventory (a failure, or a wait that timed out). */
  retain: boolean;
}

const PRUNE_ORDER = ['ValidatingWebhookConfiguration', 'MutatingWebhookConfiguration', 'CustomResourceDefinition', 'Namespace'];
/** Custom resources before most, CRDs and namespaces last: the reverse of the apply order. */
function pruneRank(kind: string): number {
  const i = PRUNE_ORDER.indexOf(kind);
  return i < 0 ? 0 : i + 1;
}

export async function prune(
  keys: readonly string[],
  o: {
    api: KubeApi;
    discovery: Discovery;
    inventoryId: string;
    propagation: Propagation;
    timeoutMs: number;
    dryRun: DryRun;
    /** Namespaces the commit's objects and the inventory are in. */
    inUse: ReadonlySet<string>;
    signal?: AbortSignal;
  },
): Promise<PruneOutcome[]> {
  const out: PruneOutcome[] = [];
  const ids = keys.map((key) => ({ key, id: parseIdKey(key) })).filter((x): x is { key: string; id: ObjectId } => x.id !== undefined);
  const ranks = [...new Set(ids.map((x) => pruneRank(x.id.kind)))].sort((a, b) => a - b);
  for (const rank of ranks) {
    // Namespaces come last: by then the objects this prune left in place (kept, another inventory's, failed) are known too.
    const inUse = new Set(o.inUse);
    for (const x of out) if (x.action !== 'pruned' && x.action !== 'gone' && x.id.namespace) inUse.add(x.id.namespace);
    const group: typeof ids = [];
    for (const x of ids) {
      if (pruneRank(x.id.kind) !== rank) continue;
      if (x.id.group === '' && x.id.kind === 'Namespace' && inUse.has(x.id.name)) {
        out.push({
          ...x,
          action: 'skipped',
          retain: true,
          reason: `namespace ${x.id.name} still holds objects of this project or objects it left in place; it is deleted once none are left in it`,
        });
      } else group.push(x);
    }
    const deleted: { key: string; id: ObjectId; live: KubeObject }[] = [];
    await Promise.all(
      group.map(async ({ key, id }) => {
        try {
          const info = await o.discovery.findKind(id.group, id.kind, o.signal);
          if (!info) return out.push({ key, id, action: 'gone', retain: false, reason: 'its kind is no longer served' });
          const path = objectPath(info, id.namespace, id.name);
          let live: KubeObject;
          try {
            live = (await o.api.request<KubeObject>({ method: 'GET', path, signal: o.signal })).body;
          } catch (e) {
            if (kubeApiStatus(e) === 404) return out.push({ key, id, action: 'gone', retain: false });
            throw e;
          }
          const owner = ownerOf(live);
          if (owner !== o.inventoryId) {
            return out.push({
              key,
              id,
              action: 'skipped',
              retain: false,
              reason: `inventory policy prevented deletion: the object belongs to ${owner ? `inventory ${JSON.stringify(owner)}` : 'no inventory'}`,
            });
          }
          if (keepOnRemove(live)) {
            // Released: no longer ours, so a later project may adopt it.
            if (o.dryRun === 'none') {
              await o.api.request({
                method: 'PATCH',
                path,
                body: { metadata: { annotations: { [ANNOTATION_OWNING_INVENTORY]: null } } },
                contentType: 'application/merge-patch+json',
                signal: o.signal,
              });
            }
            return out.push({ key, id, action: 'kept', retain: false, reason: 'annotated cli-utils.sigs.k8s.io/on-remove: keep' });
          }
          if (o.dryRun === 'client') return out.push({ key, id, action: 'pruned', retain: false });
          const propagationPolicy = o.propagation[0]!.toUpperCase() + o.propagation.slice(1);
          await o.api.request({ method: 'DELETE', path, query: { propagationPolicy, dryRun: o.dryRun === 'server' ? 'All' : undefined }, signal: o.signal });
          if (o.dryRun === 'server') return out.push({ key, id, action: 'pruned', retain: false });
          deleted.push({ key, id, live: { ...live, apiVersion: info.apiVersion, kind: info.kind } });
        } catch (e) {
          if (o.signal?.aborted) throw e;
          out.push({ key, id, action: 'failed', retain: true, reason: `${describeId(id)}: ${reasonOf(e)}` });
        }
      }),
    );
    if (deleted.length === 0) continue;
    const waited = await waitFor(
      'NotFound',
      deleted.map((d) => d.live),
      { api: o.api, discovery: o.discovery, timeoutMs: o.timeoutMs, signal: o.signal },
    );
    const stuck = new Set(waited.notReady.map((n) => n.object));
    for (const d of deleted) {
      if (stuck.has(d.live))
        out.push({
          key: d.key,
          id: d.id,
          action: 'failed',
          retain: true,
          reason: `${describeId(d.id)} was not deleted within prune_timeout (${o.timeoutMs} ms)`,
        });
      else out.push({ key: d.key, id: d.id, action: 'pruned', retain: false });
    }
  }
  return out;
}
