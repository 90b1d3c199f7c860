import { type KubeApi, KubeStatusError } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { applyRefusal, type InventoryPolicy, ownerOf } from './inventory.js';
import { ANNOTATION_OWNING_INVENTORY, type KubeObject, type ManifestObject } from './objects.js';

// One object applied: its live owner checked against the inventory policy,
// then a server-side apply under Verdict's field manager with conflicts
// forced (the manifest is the truth), annotated with the owning inventory.

export const FIELD_MANAGER = 'verdict';

export type DryRun = 'none' | 'client' | 'server';

export type ApplyAction = 'created' | 'configured' | 'unchanged' | 'failed';

export interface Applied {
  action: ApplyAction;
  /** The object as the API server answered (undefined for client dry-run and failures). */
  live?: KubeObject;
  reason?: string;
}

export interface ApplyContext {
  api: KubeApi;
  discovery: Discovery;
  inventoryId: string;
  policy: InventoryPolicy;
  dryRun: DryRun;
  signal?: AbortSignal;
}

/** The API server's refusal as users need it: the Status message names the verb for RBAC ("cannot patch resource ..."). */
export function reasonOf(e: unknown): string {
  if (e instanceof KubeStatusError) {
    const causes = (e.details?.causes ?? []).map((c) => (c.field ? `${c.field}: ${c.message}` : c.message)).filter(Boolean);
    const text = e.message + (causes.length && !e.message.includes(causes[0]!) ? ` (${causes.join('; ')})` : '');
    return e.reason ? `${e.reason}: ${text}` : text;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function applyObject(m: ManifestObject, ctx: ApplyContext): Promise<Applied> {
  const o = m.object;
  const info = ctx.discovery.lookup(o.apiVersion, o.kind);
  if (!info) return { action: 'failed', reason: `no matches for kind ${JSON.stringify(o.kind)} in version ${JSON.stringify(o.apiVersion)}` };
  const ns = o.metadata.namespace ?? '';
  const path = objectPath(info, ns, o.metadata.name);
  try {
    let live: KubeObject | undefined;
    try {
      live = (await ctx.api.request<KubeObject>({ method: 'GET', path, signal: ctx.signal })).body;
    } catch (e) {
      // A missing namespace answers 404 too: the apply below says which.
      if (!(e instanceof KubeStatusError && e.status === 404)) throw e;
    }
    const refusal = live ? applyRefusal(ctx.policy, ctx.inventoryId, ownerOf(live)) : undefined;
    if (refusal) return { action: 'failed', reason: refusal };
    if (ctx.dryRun === 'client') return { action: live ? 'configured' : 'created' };
    const body: KubeObject = {
      ...o,
      metadata: { ...o.metadata, annotations: { ...o.metadata.annotations, [ANNOTATION_OWNING_INVENTORY]: ctx.inventoryId } },
    };
    const r = await ctx.api.request<KubeObject>({
      method: 'PATCH',
      path,
      query: { fieldManager: FIELD_MANAGER, force: 'true', dryRun: ctx.dryRun === 'server' ? 'All' : undefined },
      body,
      contentType: 'application/apply-patch+yaml',
      signal: ctx.signal,
    });
    const action: ApplyAction =
      r.status === 201 || !live ? 'created' : r.body.metadata.resourceVersion === live.metadata.resourceVersion ? 'unchanged' : 'configured';
    return { action, live: r.body };
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    return { action: 'failed', reason: reasonOf(e) };
  }
}
