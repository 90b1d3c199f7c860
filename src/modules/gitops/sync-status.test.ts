import { describe, expect, it } from 'vitest';
import type { SyncReport } from '../../gen/verdict/gitops.js';
import { openServerDb } from '../../server/store/server-db.js';
import { alertsOf } from './report-service.js';
import { toWire } from './reporter.js';
import { SyncStatusStore } from './sync-status.js';

const report = (over: Partial<SyncReport> = {}): SyncReport => ({
  project_id: 'group/app',
  commit_id: 'c1',
  ok: true,
  error: '',
  applied: 2,
  changed: 1,
  unchanged: 1,
  pruned: 0,
  failed: 0,
  duration_ms: 12,
  drift_corrected: false,
  objects: [],
  finished_at: '2026-01-01T00:00:00.000Z',
  ...over,
});

describe('GitOps sync status (server)', () => {
  it('lists a sync as under way from the commit sent until its report, and again when the same commit is sent to a restarted agent', () => {
    const s = new SyncStatusStore(openServerDb(':memory:'));
    const at = (iso: string) => new Date(iso);
    // The agent's stream of the project, open on this server all along (a sync is shown only while it is).
    s.streamOpened('edge', 'group/app');
    s.sent('edge', 'group/app', 'c1', at('2026-01-01T00:00:00.000Z'));
    expect(s.syncing('edge')).toEqual([{ project_id: 'group/app', commit_id: 'c1', since: '2026-01-01T00:00:00.000Z' }]);
    // Reported (received now, after the send): no longer under way.
    s.record('edge', report());
    expect(s.syncing('edge')).toEqual([]);
    // A newer commit under way while the report still shows c1.
    s.sent('edge', 'group/app', 'c2', at('2026-01-01T00:01:00.000Z'));
    expect(s.syncing('edge').map((x) => x.commit_id)).toEqual(['c2']);
    s.record('edge', report({ commit_id: 'c2' }));
    // The agent restarted and asked from the start: c2 sent again after its report is under way again.
    s.sent('edge', 'group/app', 'c2', new Date(Date.now() + 60_000));
    expect(s.syncing('edge').map((x) => x.commit_id)).toEqual(['c2']);
    expect(s.syncing('other')).toEqual([]);
    s.forget('edge', 'group/app');
    expect(s.syncing('edge')).toEqual([]);
  });

  it('lists a sync as under way only while the agent has a stream of the project open on this server', () => {
    const s = new SyncStatusStore(openServerDb(':memory:'));
    const first = s.streamOpened('edge', 'group/app');
    s.sent('edge', 'group/app', 'c1');
    // The next stream opens before the one that sent c1 closes: still one open.
    const second = s.streamOpened('edge', 'group/app');
    first();
    first();
    expect(s.syncing('edge').map((x) => x.commit_id)).toEqual(['c1']);
    // Another agent's, or another project's, stream is not this one's.
    const other = s.streamOpened('edge', 'group/other');
    s.streamOpened('prod', 'group/app');
    second();
    expect(s.syncing('edge')).toEqual([]);
    other();
    // The agent back (a reconnect): under way again, since when the commit was sent.
    s.streamOpened('edge', 'group/app');
    expect(s.syncing('edge').map((x) => x.commit_id)).toEqual(['c1']);
  });

  it('keeps the latest report per agent and project, and the last good commit across failures', () => {
    const s = new SyncStatusStore(openServerDb(':memory:'));
    const { objects: _, ...good } = report();
    s.record('edge', { ...good, objects: [] });
    s.record('edge', {
      ...good,
      commit_id: 'c2',
      ok: false,
      failed: 1,
      objects: [{ object: '/ConfigMap gitops/x', source: 'm.yaml#1', action: 'failed', reason: 'Forbidden' }],
    });
    const [p] = s.projects('edge');
    expect(p).toMatchObject({ project_id: 'group/app', commit_id: 'c2', ok: false, failed: 1, last_ok_commit: 'c1', drift_corrected: false });
    expect(p!.objects[0]!.reason).toBe('Forbidden');
    expect(s.projects('other')).toEqual([]);
    s.setRaised('edge', 'group/app', ['a', 'b']);
    expect(s.raised('edge', 'group/app').sort()).toEqual(['a', 'b']);
  });

  it('makes one alert per failed object, per sync that could not run, and per corrected object', () => {
    const failed = alertsOf(
      'edge',
      report({ ok: false, objects: [{ object: 'apps/Deployment shop/web', source: 'd.yaml#1', action: 'failed', reason: 'Forbidden: cannot patch' }] }),
      'T',
    );
    const [a] = [...failed.values()];
    expect(a).toMatchObject({ source: 'gitops', severity: 'high', namespace: 'shop', title: 'GitOps sync failed: apps/Deployment shop/web' });
    expect(a!.labels).toMatchObject({ project: 'group/app', commit: 'c1', file: 'd.yaml#1', reason: 'Forbidden: cannot patch' });
    // The same object failing at another commit is the same alert.
    expect([
      ...alertsOf(
        'edge',
        report({ commit_id: 'c9', ok: false, objects: [{ object: 'apps/Deployment shop/web', source: '', action: 'failed', reason: 'x' }] }),
        'T',
      ).keys(),
    ]).toEqual([...failed.keys()]);
    expect([...alertsOf('edge', report({ ok: false, error: 'cannot decode' }), 'T').values()][0]!.title).toBe('GitOps sync of group/app could not run');
    const drift = [
      ...alertsOf(
        'edge',
        report({ drift_corrected: true, objects: [{ object: '/ConfigMap gitops/s', source: '', action: 'configured', reason: '' }] }),
        'T',
      ).values(),
    ];
    expect(drift.map((d) => [d.severity, d.title])).toEqual([['medium', 'GitOps corrected drift: /ConfigMap gitops/s']]);
    expect(alertsOf('edge', report(), 'T').size).toBe(0);
  });

  it('sends the failed objects and, after drift, the corrected ones', () => {
    const w = toWire({
      projectId: 'p',
      commit: 'c',
      ok: false,
      driftCorrected: false,
      result: {
        commit: 'c',
        dryRun: 'none',
        applied: 2,
        changed: 1,
        unchanged: 0,
        pruned: 0,
        failed: 1,
        durationMs: 5,
        objects: [
          { object: 'a', action: 'configured' },
          { object: 'b', action: 'failed', reason: 'r', source: 'f#1' },
        ],
      },
    });
    expect(w.objects).toEqual([{ object: 'b', source: 'f#1', action: 'failed', reason: 'r' }]);
    expect(w).toMatchObject({ applied: 2, changed: 1, failed: 1, duration_ms: 5, ok: false });
  });
});
