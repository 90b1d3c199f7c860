import { kubeApiStatus } from '../../../agent/kubernetes/errors.js';
import type { KubeApi } from './api.js';

// Which REST resource serves an apiVersion + kind, and whether it is
// namespaced: the API server's discovery documents, one per group version,
// read when a sync first needs them and again once when a kind is unknown
// (its CRD was just applied in the same commit).

export interface ResourceInfo {
  apiVersion: string;
  kind: string;
  /** Plural resource name: configmaps, deployments. */
  resource: string;
  namespaced: boolean;
}

interface APIResourceList {
  resources?: { name: string; kind: string; namespaced: boolean }[];
}

export class Discovery {
  private readonly byGv = new Map<string, Map<string, ResourceInfo>>();

  constructor(private readonly api: KubeApi) {}

  /** Reads the discovery documents of these group versions (only those not read yet, unless `again`). */
  async load(apiVersions: Iterable<string>, signal?: AbortSignal, again = false): Promise<void> {
    const missing = [...new Set(apiVersions)].filter((gv) => again || !this.byGv.has(gv));
    await Promise.all(
      missing.map(async (gv) => {
        const path = gv.includes('/') ? `/apis/${gv}` : `/api/${gv}`;
        const kinds = new Map<string, ResourceInfo>();
        try {
          const r = await this.api.request<APIResourceList>({ method: 'GET', path, signal });
          for (const res of r.body.resources ?? []) {
            // Subresources (deployments/status) share the kind: the plain resource wins.
            if (res.name.includes('/') || kinds.has(res.kind)) continue;
            kinds.set(res.kind, { apiVersion: gv, kind: res.kind, resource: res.name, namespaced: res.namespaced });
          }
        } catch (e) {
          if (kubeApiStatus(e) !== 404) throw e;
          // An unknown group version: every kind in it is unknown until it is read again (its CRD applied by this commit).
        }
        this.byGv.set(gv, kinds);
      }),
    );
  }

  lookup(apiVersion: string, kind: string): ResourceInfo | undefined {
    return this.byGv.get(apiVersion)?.get(kind);
  }

  /**
   * A kind by group alone, in the group's preferred version: what pruning
   * needs, since an inventory key (cli-utils' format) names no version.
   */
  async findKind(group: string, kind: string, signal?: AbortSignal): Promise<ResourceInfo | undefined> {
    if (group === '') {
      await this.load(['v1'], signal);
      return this.lookup('v1', kind);
    }
    if (!this.preferred) {
      const r = await this.api.request<{ groups?: { name: string; preferredVersion?: { groupVersion: string }; versions?: { groupVersion: string }[] }[] }>({
        method: 'GET',
        path: '/apis',
        signal,
      });
      this.preferred = new Map(
        (r.body.groups ?? []).map((g) => [
          g.name,
          [g.preferredVersion?.groupVersion, ...(g.versions ?? []).map((v) => v.groupVersion)].filter((v): v is string => Boolean(v)),
        ]),
      );
    }
    for (const gv of new Set(this.preferred.get(group) ?? [])) {
      await this.load([gv], signal);
      const info = this.lookup(gv, kind);
      if (info) return info;
    }
    return undefined;
  }

  private preferred: Map<string, string[]> | undefined;
}

/** The REST path of an object (or of its collection when name is undefined). */
export function objectPath(info: ResourceInfo, namespace: string, name?: string): string {
  const base = info.apiVersion.includes('/') ? `/apis/${info.apiVersion}` : `/api/${info.apiVersion}`;
  const ns = info.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${base}${ns}/${info.resource}${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}
