import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { KubeApi, KubeRequest } from './kube/api.js';
import type { Discovery } from './kube/discovery.js';
import type { KubeObject } from './objects.js';
import { CONCURRENCY } from './pool.js';
import { type WaitResult, waitFor } from './wait.js';

// The wait against a fake API server: how many reads it has in flight, and
// that a Failed object ends its wait (the real API server: test/gitops/wait.test.ts).
// The clock is the test's (the wait's polls, its deadline and the fake reads'
// latency), so how many rounds run depends on the wait alone, not on the machine.

const deployment = (name: string, status?: object): KubeObject =>
  ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: 'w', generation: 1 },
    spec: { replicas: 1 },
    ...(status ? { status } : {}),
  }) as KubeObject;
const inProgress = { observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 0 };
const deadlineExceeded = {
  observedGeneration: 1,
  conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded', message: 'ReplicaSet "x" has timed out progressing.' }],
};

function fakeApi(answer: (name: string) => object) {
  const seen = { reads: 0, inFlight: 0, max: 0 };
  const api = {
    async request(r: KubeRequest) {
      seen.reads++;
      seen.max = Math.max(seen.max, ++seen.inFlight);
      await new Promise((ok) => setTimeout(ok, 5));
      seen.inFlight--;
      return { status: 200, body: deployment(r.path.split('/').pop()!, answer(r.path.split('/').pop()!)) };
    },
  } as unknown as KubeApi;
  const discovery = { lookup: () => ({ apiVersion: 'apps/v1', kind: 'Deployment', resource: 'deployments', namespaced: true }) } as unknown as Discovery;
  return { api, discovery, seen };
}

/** Runs the wait with the test's clock moved on `ms` (all of its timers when undefined); undefined if it is still waiting then. */
async function settled(wait: Promise<WaitResult>, ms?: number): Promise<WaitResult | undefined> {
  let r: WaitResult | undefined;
  void wait.then((x) => (r = x));
  if (ms === undefined) await vi.runAllTimersAsync();
  else await vi.advanceTimersByTimeAsync(ms);
  return r;
}

describe('waitFor', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reads at most CONCURRENCY objects at a time, however many are pending (1,000 objects)', async () => {
    const { api, discovery, seen } = fakeApi(() => inProgress);
    const objects = Array.from({ length: 1000 }, (_, i) => deployment(`d${i}`));
    const r = await settled(waitFor('Current', objects, { api, discovery, timeoutMs: 1_500 }));
    expect(r?.notReady).toHaveLength(1000);
    expect(seen.reads).toBeGreaterThanOrEqual(1000);
    expect(seen.max).toBeLessThanOrEqual(CONCURRENCY);
  });

  it('stops waiting for a Failed object and reports it with its reason after the round that read it, not at the timeout', async () => {
    const { api, discovery, seen } = fakeApi((name) => (name === 'bad' ? deadlineExceeded : { ...inProgress, availableReplicas: 1, readyReplicas: 1 }));
    // One poll interval and one read of each: done, 59 s before the timeout.
    const r = await settled(waitFor('Current', [deployment('bad'), deployment('good')], { api, discovery, timeoutMs: 60_000 }), 1_000);
    expect(seen.reads).toBe(2);
    expect(r?.notReady.map((n) => [n.object.metadata.name, n.status.status, n.status.message])).toEqual([
      ['bad', 'Failed', 'Progress deadline exceeded: ReplicaSet "x" has timed out progressing.'],
    ]);
  });

  it('does not read an object already Failed in the apply answer', async () => {
    const { api, discovery, seen } = fakeApi(() => inProgress);
    const r = await settled(waitFor('Current', [deployment('bad', deadlineExceeded)], { api, discovery, timeoutMs: 60_000 }), 0);
    expect(seen.reads).toBe(0);
    expect(r?.notReady.map((n) => n.status.status)).toEqual(['Failed']);
  });

  it('waits for a Failed object being pruned until it is gone (Failed ends only the wait for Current)', async () => {
    const { api, discovery, seen } = fakeApi(() => deadlineExceeded);
    const r = await settled(waitFor('NotFound', [deployment('bad')], { api, discovery, timeoutMs: 1_200 }));
    expect(seen.reads).toBeGreaterThanOrEqual(2);
    expect(r?.notReady.map((n) => n.status.status)).toEqual(['Failed']);
  });
});
