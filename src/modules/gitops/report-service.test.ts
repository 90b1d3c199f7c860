import { describe, expect, it } from 'vitest';
import type { SyncReport } from '../../gen/verdict/gitops.js';
import { AlertStore } from '../../server/store/alert-store.js';
import { openServerDb } from '../../server/store/server-db.js';
import { alertsOf, RULE_DRIFT, RULE_FAILED } from './report-service.js';
import { SyncStatusStore } from './sync-status.js';

// What a good sync resolves on a replica that did not raise the alerts itself:
// the project's gitops alerts open in the store, whoever stored them.

const failed = (project: string, object: string): SyncReport => ({
  project_id: project,
  commit_id: 'c1',
  ok: false,
  error: '',
  applied: 1,
  changed: 0,
  unchanged: 0,
  pruned: 0,
  failed: 1,
  duration_ms: 1,
  drift_corrected: false,
  objects: [{ object, source: 'm.yaml#1', action: 'failed', reason: 'Forbidden' }],
  finished_at: '2026-01-01T00:00:00.000Z',
});

describe('GitOps alerts open in the store', () => {
  it("finds the project's open gitops alerts by agent and project label, not resolved ones or other projects'", () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const status = new SyncStatusStore(db);
    const raise = (agent: string, r: SyncReport) => {
      const alerts = alertsOf(agent, r, '2026-01-01T00:00:00.000Z');
      store.ingest(
        agent,
        [...alerts.values()].map((payload) => ({ id: `${agent}:${payload.fingerprint}`, payload })),
      );
      return [...alerts.keys()];
    };
    const [web] = raise('edge', failed('group/app', 'ConfigMap shop/web'));
    const [db1] = raise('edge', failed('group/app', 'ConfigMap shop/db'));
    raise('edge', failed('group/other', 'ConfigMap shop/web'));
    raise('other-agent', failed('group/app', 'ConfigMap shop/web'));
    const open = () => status.openInStore('edge', 'group/app', [RULE_FAILED, RULE_DRIFT]).sort();
    expect(open()).toEqual([web, db1].sort());
    const id = store.list({ limit: 10, agent: ['edge'] }).alerts.find((a) => a.fingerprint === db1)!.id;
    store.setStatus(id, 'acknowledged', 'alice');
    expect(open()).toEqual([web, db1].sort());
    store.setStatus(id, 'resolved', 'alice');
    expect(open()).toEqual([web]);
    // The configuration project's alerts carry its display name as their project label.
    const [own] = raise('edge', failed('', 'ConfigMap shop/x'));
    expect(status.openInStore('edge', '(configuration project)', [RULE_FAILED, RULE_DRIFT])).toEqual([own]);
  });
});
