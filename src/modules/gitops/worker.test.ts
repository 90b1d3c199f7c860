import { describe, expect, it } from 'vitest';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { inventoryRef } from './inventory.js';
import { KubeApi } from './kube/api.js';
import { ProjectWorker } from './worker.js';

// The worker's timing: a commit that replaces a failing one is synchronised at
// once, not after the failing one's backoff. The batches here fail to decode,
// before any request, so no API server is needed (syncs against a real one:
// test/gitops/).

describe('ProjectWorker', () => {
  it('a new commit ends the wait before a failed sync is retried, and its own failures back off from the start', async () => {
    const { log, logs: lines } = capturingLogger();
    const at = (l: Record<string, unknown>) => Date.parse(String(l.time));
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
    try {
      worker.offer(bad('c1'));
      await until(() => lines.some((l) => l.msg === 'GitOps: retrying synchronization after a delay'), 5000, 'the first retry');
      expect(lines.find((l) => l.msg === 'GitOps: retrying synchronization after a delay')?.retry_in_ms).toBe(30_000);
      const offered = Date.now();
      worker.offer(bad('c2'));
      await until(() => lines.some((l) => l.msg === 'Synchronizing objects' && l.commit_id === 'c2'), 5000, 'c2 to be synchronised');
      expect(at(lines.find((l) => l.msg === 'Synchronizing objects' && l.commit_id === 'c2')!) - offered).toBeLessThan(1000);
      // c2 failed too: its first retry waits the initial delay, not c1's second (60 s).
      await until(() => lines.filter((l) => l.msg === 'GitOps: retrying synchronization after a delay').length === 2, 5000, 'the second retry');
      expect(lines.filter((l) => l.msg === 'GitOps: retrying synchronization after a delay').map((l) => l.retry_in_ms)).toEqual([30_000, 30_000]);
    } finally {
      stop.abort();
      await running;
      api.close();
    }
    expect(lines.filter((l) => l.msg === 'Synchronization failed').map((l) => [l.commit_id, String(l.error).slice(0, 24)])).toEqual([
      ['c1', 'failed to decode a.yaml '],
      ['c2', 'failed to decode a.yaml '],
    ]);
  });
});
