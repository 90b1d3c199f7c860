import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { inventoryRef } from './inventory.js';
import { KubeApi } from './kube/api.js';
import { ProjectWorker, SYNC_BACKOFF } from './worker.js';

// The worker's timing: a commit that replaces a failing one is synchronised at
// once, not after the failing one's backoff. The batches here fail to decode,
// before any request, so no API server is needed (syncs against a real one:
// test/gitops/).

describe('ProjectWorker', () => {
  // The clock is the test's: a timer fires only when the test moves time on, so
  // "at once" means with no time passing at all, whatever the machine's speed.
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('a new commit ends the wait before a failed sync is retried, and its own failures back off from the start', async () => {
    const { log, logs: lines } = capturingLogger();
    const api = new KubeApi({ server: 'https://127.0.0.1:1', requestOptions: async () => ({ headers: {} }) });
    const worker = new ProjectWorker({
      projectId: 'group/app',
      settings: {
        defaultNamespace: 'default',
        dryRun: 'none',
        prune: true,
        pruneTimeoutMs: 1000,
        propagation: 'foreground',
        inventoryPolicy: 'must_match',
        reconcileTimeoutMs: 1000,
      },
      api,
      inventory: inventoryRef('edge', 'group/app', 'default'),
      log,
      resyncIntervalMs: 60_000,
      backoff: { initialMs: 30_000, maxMs: 60_000, factor: 2, jitter: false },
    });
    const stop = new AbortController();
    const running = worker.run(stop.signal);
    const bad = (commit: string) => ({ commit, projectId: 'group/app', files: [{ source: 'a.yaml', data: Buffer.from('a: [\n') }] });
    const syncs = () => lines.filter((l) => l.msg === 'Synchronizing objects').map((l) => l.commit_id);
    const retries = () => lines.filter((l) => l.msg === 'GitOps: retrying synchronization after a delay').map((l) => l.retry_in_ms);
    // Lets the worker run as far as it can without time passing (the log reaches `lines` on a later tick).
    const settle = async () => {
      for (let i = 0; i < 20; i++) await new Promise((ok) => setImmediate(ok));
    };
    try {
      worker.offer(bad('c1'));
      await settle();
      expect(syncs()).toEqual(['c1']);
      expect(retries()).toEqual([30_000]);
      worker.offer(bad('c2'));
      await settle();
      // c2 was synchronised with the clock standing still: c1's 30 s wait did not run out first.
      expect(syncs()).toEqual(['c1', 'c2']);
      // c2 failed too: its first retry waits the initial delay, not c1's second (60 s).
      expect(retries()).toEqual([30_000, 30_000]);
      await vi.advanceTimersByTimeAsync(29_999);
      await settle();
      expect(syncs()).toEqual(['c1', 'c2']);
      await vi.advanceTimersByTimeAsync(1);
      await settle();
      expect(syncs()).toEqual(['c1', 'c2', 'c2']);
      expect(retries()).toEqual([30_000, 30_000, 60_000]);
    } finally {
      stop.abort();
      await running;
      api.close();
    }
    await settle();
    expect(lines.filter((l) => l.msg === 'Synchronization failed').map((l) => [l.commit_id, String(l.error).slice(0, 24)])).toEqual([
      ['c1', 'failed to decode a.yaml '],
      ['c2', 'failed to decode a.yaml '],
      ['c2', 'failed to decode a.yaml '],
    ]);
  });

  it("retries a failing commit after the original's 10 s, 20 s, 40 s, then every minute", async () => {
    const { log, logs: lines } = capturingLogger();
    const api = new KubeApi({ server: 'https://127.0.0.1:1', requestOptions: async () => ({ headers: {} }) });
    const worker = new ProjectWorker({
      projectId: 'group/app',
      settings: {
        defaultNamespace: 'default',
        dryRun: 'none',
        prune: true,
        pruneTimeoutMs: 1000,
        propagation: 'foreground',
        inventoryPolicy: 'must_match',
        reconcileTimeoutMs: 1000,
      },
      api,
      inventory: inventoryRef('edge', 'group/app', 'default'),
      log,
      resyncIntervalMs: 60_000,
      backoff: SYNC_BACKOFF,
    });
    const stop = new AbortController();
    const running = worker.run(stop.signal);
    const retries = () => lines.filter((l) => l.msg === 'GitOps: retrying synchronization after a delay').map((l) => l.retry_in_ms);
    const settle = async () => {
      for (let i = 0; i < 20; i++) await new Promise((ok) => setImmediate(ok));
    };
    try {
      worker.offer({ commit: 'c1', projectId: 'group/app', files: [{ source: 'a.yaml', data: Buffer.from('a: [\n') }] });
      await settle();
      for (const wait of [10_000, 20_000, 40_000, 60_000]) {
        await vi.advanceTimersByTimeAsync(wait);
        await settle();
      }
      expect(retries()).toEqual([10_000, 20_000, 40_000, 60_000, 60_000]);
    } finally {
      stop.abort();
      await running;
      api.close();
    }
  });
});
