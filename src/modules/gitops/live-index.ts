import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { idKey, idOf, type ManifestObject } from './objects.js';

// What already exists, read with one metadata-only list per kind and
// namespace instead of one GET per object: a sync of 1,000 objects then costs
// about 1,000 requests, as kubectl's does, not 2,000. Where listing is not
// allowed (RBAC granting get only), objects are read one by one as before.

export interface LiveMeta {
  owner: string | undefined;
  resourceVersion: string | undefined;
}

export interface LiveIndex {
  /** Undefined: not listed, read it yourself. Null: listed, and it does not exist. */
  get(key: string): LiveMeta | null | undefined;
}

const PARTIAL = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json';

interface MetaList {
  items?: { metadata: { name: string; namespace?: string; resourceVersion?: string; annotations?: Record<string, string> } }[];
  metadata?: { continue?: string };
}

export async function indexLive(api: KubeApi, discovery: Discovery, objects: readonly ManifestObject[], signal?: AbortSignal): Promise<LiveIndex> {
  // One list per kind and namespace, and only where it saves requests.
  const groups = new Map<string, ManifestObject[]>();
  for (const m of objects) {
    const k = `${m.object.apiVersion}|${m.object.kind}|${m.object.metadata.namespace ?? ''}`;
    const g = groups.get(k);
    if (g) g.push(m);
    else groups.set(k, [m]);
  }
  const found = new Map<string, LiveMeta>();
  const listed = new Set<string>();
  await Promise.all(
    [...groups.values()]
      .filter((g) => g.length > 1)
      .map(async (g) => {
        const first = g[0]!.object;
        const info = discovery.lookup(first.apiVersion, first.kind);
        if (!info) return;
        const ns = first.metadata.namespace ?? '';
        const seen = new Map<string, LiveMeta>();
        try {
          let cont: string | undefined;
          do {
            const r = await api.request<MetaList>({
              method: 'GET',
              path: objectPath(info, ns),
              query: { limit: '500', continue: cont },
              accept: PARTIAL,
              signal,
            });
            for (const it of r.body.items ?? []) {
              seen.set(it.metadata.name, { owner: it.metadata.annotations?.['config.k8s.io/owning-inventory'], resourceVersion: it.metadata.resourceVersion });
            }
            cont = r.body.metadata?.continue || undefined;
          } while (cont);
        } catch (e) {
          // Not allowed to list (or the namespace is yet to come): each object is read alone.
          if ((kubeApiStatus(e) ?? 500) < 500) return;
          throw e;
        }
        for (const m of g) {
          const key = idKey(idOf(m.object));
          listed.add(key);
          const meta = seen.get(m.object.metadata.name ?? '');
          if (meta) found.set(key, meta);
        }
      }),
  );
  return { get: (key) => found.get(key) ?? (listed.has(key) ? null : undefined) };
}
