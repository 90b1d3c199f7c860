import { createHash } from 'node:crypto';
import { kubeApiCauses, kubeApiReason, kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { applyRefusal, type InventoryPolicy, ownerOf } from './inventory.js';
import type { LiveIndex, LiveMeta } from './live-index.js';
import { ANNOTATION_OWNING_INVENTORY, idKey, idOf, type KubeObject, type ManifestObject } from './objects.js';

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
  /** A failure that wrote nothing: refused before sending (no such kind, the inventory policy) or by the API server (a 4xx). */
  unwritten?: boolean;
  /** Refused by the inventory policy: the live object is another inventory's (or none's), not ours to record. */
  policyRefused?: boolean;
}

export interface ApplyContext {
  api: KubeApi;
  /** What a list already told about existing objects (live-index.ts). */
  known?: LiveIndex;
  /**
   * What this agent last applied per object (hash of the body, resourceVersion
   * it got back). An object whose live resourceVersion is still that one has
   * not changed since, so the same body is not sent again: an unchanged
   * re-apply costs one list per kind, and drift (a new resourceVersion) is
   * still applied over.
   */
  lastApplied?: Map<string, { hash: string; resourceVersion: string }>;
  discovery: Discovery;
  inventoryId: string;
  policy: InventoryPolicy;
  dryRun: DryRun;
  signal?: AbortSignal;
}

/** The API server's refusal as users need it: the Status message names the verb for RBAC ("cannot patch resource ..."). */
export function reasonOf(e: unknown): string {
  const reason = kubeApiReason(e);
  if (reason !== undefined) {
    const err = e as Error;
    const causes = kubeApiCauses(e)
      .map((c) => (c.field ? `${c.field}: ${c.message}` : c.message))
      .filter(Boolean);
    const text = err.message + (causes.length && !err.message.includes(causes[0]!) ? ` (${causes.join('; ')})` : '');
    return reason ? `${reason}: ${text}` : text;
  }
  return e instanceof Error ? e.message : String(e);
}

export async function applyObject(m: ManifestObject, ctx: ApplyContext): Promise<Applied> {
  const o = m.object;
  const info = ctx.discovery.lookup(o.apiVersion, o.kind);
  if (!info) return { action: 'failed', unwritten: true, reason: `no matches for kind ${JSON.stringify(o.kind)} in version ${JSON.stringify(o.apiVersion)}` };
  const ns = o.metadata.namespace ?? '';
  const path = objectPath(info, ns, o.metadata.name);
  try {
    let live: LiveMeta | undefined;
    const known = ctx.known?.get(idKey(idOf(o)));
    if (known !== undefined) live = known ?? undefined;
    else {
      try {
        const got = (await ctx.api.request<KubeObject>({ method: 'GET', path, signal: ctx.signal })).body;
        live = { owner: ownerOf(got), resourceVersion: got.metadata.resourceVersion as string | undefined };
      } catch (e) {
        // A missing namespace answers 404 too: the apply below says which.
        if (kubeApiStatus(e) !== 404) throw e;
      }
    }
    const refusal = live ? applyRefusal(ctx.policy, ctx.inventoryId, live.owner) : undefined;
    if (refusal) return { action: 'failed', unwritten: true, policyRefused: true, reason: refusal };
    if (ctx.dryRun === 'client') return { action: live ? 'configured' : 'created' };
    const key = idKey(idOf(o));
    const body: KubeObject = {
      ...o,
      metadata: { ...o.metadata, annotations: { ...o.metadata.annotations, [ANNOTATION_OWNING_INVENTORY]: ctx.inventoryId } },
    };
    const hash = ctx.dryRun === 'none' && ctx.lastApplied ? createHash('sha256').update(JSON.stringify(body)).digest('hex') : '';
    const last = hash ? ctx.lastApplied?.get(key) : undefined;
    if (last && live && last.hash === hash && last.resourceVersion === live.resourceVersion && live.owner === ctx.inventoryId) return { action: 'unchanged' };
    const r = await ctx.api.request<KubeObject>({
      method: 'PATCH',
      path,
      // Strict, as kubectl's default: a misspelt field is an error naming it, not silently dropped.
      query: { fieldManager: FIELD_MANAGER, force: 'true', fieldValidation: 'Strict', dryRun: ctx.dryRun === 'server' ? 'All' : undefined },
      body,
      contentType: 'application/apply-patch+yaml',
      signal: ctx.signal,
    });
    const action: ApplyAction = r.status === 201 || !live ? 'created' : r.body.metadata.resourceVersion === live.resourceVersion ? 'unchanged' : 'configured';
    if (hash && typeof r.body.metadata.resourceVersion === 'string') ctx.lastApplied?.set(key, { hash, resourceVersion: r.body.metadata.resourceVersion });
    return { action, live: r.body };
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    // A 4xx is a refusal, nothing written; an answer that never came (a timeout, a 5xx) may follow a write.
    const status = kubeApiStatus(e) ?? 0;
    const refused = status >= 400 && status < 500 && status !== 408;
    return { action: 'failed', reason: reasonOf(e), ...(refused ? { unwritten: true } : {}) };
  }
}
