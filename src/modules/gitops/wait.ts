import { sleep } from '../../shared/retry/backoff.js';
import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import type { KubeApi } from './kube/api.js';
import { type Discovery, objectPath } from './kube/discovery.js';
import { type Computed, computeStatus } from './kstatus.js';
import { describeId, idOf, type KubeObject } from './objects.js';
import { CONCURRENCY, inPool } from './pool.js';

// Waiting for applied objects to become Current (or pruned ones to be gone)
// by reading them again until they are, the timeout passes or the sync is
// cancelled. Objects already Current in the apply's answer are never read.
// As cli-utils' wait, an object that is Failed (a Deployment past its
// progressDeadlineSeconds, a failed Job or Pod, a stalled object) is not waited
// for any longer: it is reported at once, with kstatus' reason. The reads of
// one round go through the sync's pool (CONCURRENCY at a time), not all at once.

const POLL_MS = 500;

export interface WaitResult {
  /** Objects that did not get there, with kstatus' message: Failed ones (no longer waited for) and those the timeout or cancel found short. */
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
  // Failed is final only for Current: an object being deleted is waited for until it is gone, whatever its status.
  const failedFinal = (c: Computed) => want === 'Current' && c.status === 'Failed';
  const done = (c: Computed) => c.status === want || failedFinal(c);
  let pending = objects.map((object) => ({
    object,
    status: want === 'Current' ? computeStatus(object) : ({ status: 'Unknown', message: 'deletion requested' } as Computed),
  }));
  const failed = pending.filter((p) => failedFinal(p.status));
  pending = pending.filter((p) => !done(p.status));
  while (pending.length && !o.signal?.aborted) {
    if (Date.now() >= deadline) break;
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())), o.signal);
    const next = await inPool(
      pending,
      CONCURRENCY,
      async (p) => {
        const live = await read(o.api, o.discovery, p.object, o.signal);
        return { object: p.object, status: computeStatus(live) };
      },
      o.signal,
    );
    // A cancelled round leaves the objects it did not read as they were.
    const round = pending.map((p, i) => next[i] ?? p);
    failed.push(...round.filter((p) => failedFinal(p.status)));
    pending = round.filter((p) => !done(p.status));
  }
  return { notReady: [...failed, ...pending] };
}

export function describeNotReady(want: string, r: WaitResult['notReady'][number]): string {
  return `${describeId(idOf(r.object))} is ${r.status.status}, not ${want}: ${r.status.message}`;
}
