import { sleep } from '../../shared/retry/backoff.js';
import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { type Computed, computeStatus } from './kstatus.js';
import { describeId, idOf, type KubeObject } from './objects.js';

// Waiting for applied objects to become Current (or pruned ones to be gone)
// by reading them again until they are, the timeout passes or the sync is
// cancelled. Objects already Current in the apply's answer are never read.

const POLL_MS = 500;

export interface WaitResult {
  /** Objects that did not get there, with kstatus' message. */
  notReady: { object: KubeObject; status: Computed }[];
}

async function read(api: KubeApi, discovery: Discovery, o: KubeObject, signal?: AbortSignal): Promise<KubeObject | undefined> {
  const info = discovery.lookup(o.apiVersion, o.kind);
  if (!info) return undefined;
  try {
    return (await api.request<KubeObject>({ method: 'GET', path: objectPath(info, o.metadata.namespace ?? '', o.metadata.name), signal })).body;
  } catch (e) {
    if (kubeApiStatus(e) === 404) return undefined;
    throw e;
  }
}

export async function waitFor(
  want: 'Current' | 'NotFound',
  objects: readonly KubeObject[],
  o: { api: KubeApi; discovery: Discovery; timeoutMs: number; signal?: AbortSignal },
): Promise<WaitResult> {
  const deadline = Date.now() + o.timeoutMs;
  let pending = objects.map((object) => ({
    object,
    status: want === 'Current' ? computeStatus(object) : ({ status: 'Unknown', message: 'deletion requested' } as Computed),
  }));
  pending = pending.filter((p) => p.status.status !== want);
  while (pending.length && !o.signal?.aborted) {
    if (Date.now() >= deadline) return { notReady: pending };
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())), o.signal);
    const next = await Promise.all(
      pending.map(async (p) => {
        const live = await read(o.api, o.discovery, p.object, o.signal);
        return { object: p.object, status: computeStatus(live) };
      }),
    );
    pending = next.filter((p) => p.status.status !== want);
  }
  return { notReady: pending };
}

export function describeNotReady(want: string, r: WaitResult['notReady'][number]): string {
  return `${describeId(idOf(r.object))} is ${r.status.status}, not ${want}: ${r.status.message}`;
}
