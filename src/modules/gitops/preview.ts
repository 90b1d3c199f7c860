import type { ManifestFile } from './decode.js';
import { FIELD_MANAGER, reasonOf } from './apply-object.js';
import { applyRefusal, type InventoryPolicy, type InventoryRef, ownerOf, readInventory } from './inventory.js';
import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { ANNOTATION_OWNING_INVENTORY, describeId, idOf, type KubeObject, keepOnRemove, parseIdKey } from './objects.js';
import { plan } from './plan.js';
import { diffFields } from './field-diff.js';

// What a sync would change, for review before merging (`verdict gitops diff`):
// each object sent as a server-side dry-run apply, and what the API server
// would store compared with what it stores now. Comparing with the dry-run's
// answer, not the manifest, is what keeps normalised values (cpu: 1000m
// stored as 1, stringData stored as data) from showing as changes forever.

export interface PreviewLine {
  object: string;
  source?: string;
  action: 'create' | 'configure' | 'unchanged' | 'prune' | 'keep' | 'failed';
  /** "spec.replicas: 2 -> 3", "spec.template.spec.containers[name=app].image: \"nginx:1\" -> \"nginx:2\"" (field-diff.ts) */
  changes?: string[];
  reason?: string;
}

/** Fields the API server owns: never a change the manifest makes. */
function normalise(o: KubeObject | undefined): unknown {
  if (!o) return undefined;
  const { status: _status, ...rest } = o as KubeObject & { status?: unknown };
  const { managedFields: _m, resourceVersion: _r, generation: _g, uid: _u, creationTimestamp: _c, ...meta } = o.metadata;
  const annotations = { ...(meta.annotations ?? {}) };
  delete annotations[ANNOTATION_OWNING_INVENTORY];
  return { ...rest, metadata: { ...meta, annotations } };
}

export async function preview(
  files: readonly ManifestFile[],
  o: {
    defaultNamespace: string;
    api: KubeApi;
    discovery: Discovery;
    /** The agent's inventory of the project: its objects the manifests no longer hold are pruned (unless `prune` is false), and `policy` refuses live objects it does not own. */
    inventory?: InventoryRef;
    policy?: InventoryPolicy;
    /** The entry's prune (default true): false keeps what the manifests no longer hold, so nothing is listed for it. */
    prune?: boolean;
    signal?: AbortSignal;
  },
): Promise<PreviewLine[]> {
  const { api, discovery, signal } = o;
  const p = await plan(files, o.defaultNamespace, discovery, signal);
  const out: PreviewLine[] = p.invalid.map((i) => ({ object: i.object, source: `${i.source}#${i.index}`, action: 'failed', reason: i.message }));
  // Namespaces this commit creates: a dry-run cannot put anything in them, so what goes there is shown as created, unchecked.
  const newNamespaces = new Set<string>();
  for (const wave of p.waves) {
    for (const m of wave) {
      const obj = m.object;
      const line: PreviewLine = { object: describeId(idOf(obj)), source: `${m.source}#${m.index}`, action: 'unchanged' };
      out.push(line);
      const info = discovery.lookup(obj.apiVersion, obj.kind);
      const ns = obj.metadata.namespace ?? '';
      if (!info) {
        Object.assign(line, { action: 'create', reason: 'its CRD is created by this commit; not checked by the API server' });
        continue;
      }
      if (ns && newNamespaces.has(ns)) {
        Object.assign(line, { action: 'create', reason: `namespace ${ns} is created by this commit; not checked by the API server` });
        continue;
      }
      const path = objectPath(info, ns, obj.metadata.name);
      try {
        let live: KubeObject | undefined;
        try {
          live = (await api.request<KubeObject>({ method: 'GET', path, signal })).body;
        } catch (e) {
          if (kubeApiStatus(e) !== 404) throw e;
        }
        // The agent's apply refuses it before sending anything (apply-object.ts), with this reason.
        const refusal = live && o.inventory && o.policy ? applyRefusal(o.policy, o.inventory.id, ownerOf(live)) : undefined;
        if (refusal) {
          Object.assign(line, { action: 'failed', reason: refusal });
          continue;
        }
        const dry = await api.request<KubeObject>({
          method: 'PATCH',
          path,
          query: { fieldManager: FIELD_MANAGER, force: 'true', fieldValidation: 'Strict', dryRun: 'All' },
          body: obj,
          contentType: 'application/apply-patch+yaml',
          signal,
        });
        if (!live) {
          line.action = 'create';
          if (obj.kind === 'Namespace' && !obj.apiVersion.includes('/')) newNamespaces.add(obj.metadata.name ?? '');
          continue;
        }
        const changes = diffFields(normalise(live), normalise(dry.body));
        if (changes.length) Object.assign(line, { action: 'configure', changes });
      } catch (e) {
        if (signal?.aborted) throw e;
        Object.assign(line, { action: 'failed', reason: reasonOf(e) });
      }
    }
  }
  if (o.inventory && o.prune !== false) {
    for (const key of [...((await readInventory(api, o.inventory, signal)) ?? [])].filter((k) => !p.keys.has(k))) {
      const id = parseIdKey(key);
      if (!id) continue;
      const info = await discovery.findKind(id.group, id.kind, signal);
      if (!info) continue;
      try {
        const live = (await api.request<KubeObject>({ method: 'GET', path: objectPath(info, id.namespace, id.name), signal })).body;
        if (live.metadata.annotations?.[ANNOTATION_OWNING_INVENTORY] !== o.inventory.id) continue;
        out.push({ object: describeId(id), action: keepOnRemove(live) ? 'keep' : 'prune' });
      } catch (e) {
        if (kubeApiStatus(e) !== 404) throw e;
      }
    }
  }
  return out;
}
