import { describe, expect, it } from 'vitest';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { ciliumPayload } from '../store/test-payloads.js';
import { migrateWebhooks } from './db.js';

describe('webhook tables', () => {
  it('forget what an integration was given of an alert once retention purges the alert', () => {
    const db = openServerDb(':memory:');
    migrateWebhooks(db);
    const store = new AlertStore(db);
    const old = new Date(Date.UTC(2024, 0, 1)).toISOString();
    const { alerts } = store.ingest('edge', [
      // Retention ages alerts by receipt: this one arrived in 2024.
      { id: 'e-old', payload: ciliumPayload({ fp: 'old', time: old }), receivedAt: Date.parse(old) },
      { id: 'e-new', payload: ciliumPayload({ fp: 'new' }) },
    ]);
    db.prepare("INSERT INTO webhook_integrations (id, name, origin, spec, created_at, updated_at) VALUES (1, 'rx', 'api', '{}', '', '')").run();
    const given = db.prepare("INSERT INTO webhook_alert_events (integration_id, alert_id, event) VALUES (1, ?, 'triggered')");
    for (const a of alerts) given.run(a.id);
    store.purgeStep({ maxAgeMs: 30 * 86_400_000, maxRows: 1e9, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 });
    const left = db.prepare('SELECT alert_id FROM webhook_alert_events').all() as { alert_id: number }[];
    expect(left.map((r) => r.alert_id)).toEqual([alerts.find((a) => a.fingerprint === 'new')!.id]);
    db.close();
  });
});
