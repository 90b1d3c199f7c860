import { describe, expect, it } from 'vitest';
import { parseWebhooksJson } from '../../shared/config/webhooks-config.js';
import { AlertStore } from '../store/alert-store.js';
import { openServerDb } from '../store/server-db.js';
import { falcoPayload } from '../store/test-payloads.js';
import { migrateWebhooks } from './db.js';
import { IntegrationRegistry } from './integrations.js';
import { type Delivery, Outbox } from './outbox.js';

// An Alertmanager receiver keeps an alert open or closed by the last event it got: whatever order the firing and
// the resolved go out in, a resolved alert must end with a resolved sent after its firing.
let n = 0;
function setup() {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  migrateWebhooks(db);
  const reg = new IntegrationRegistry(db);
  const cfg = parseWebhooksJson({ allow_private_addresses: ['127.0.0.1'], integrations: [{ name: 'am', type: 'alertmanager', url: 'http://127.0.0.1:9/' }] });
  const i = reg.create(cfg.integrations[0]!, 'config');
  const ob = new Outbox(db, reg, { externalUrl: () => 'http://verdict.example' });
  const ingest = () => store.ingest('edge', [{ id: `ev-${++n}`, payload: falcoPayload({ fp: `fp-${n}` }) }]).alerts[0]!;
  const status = (id: number, to: 'resolved' | 'triggered') => db.transaction(() => ob.enqueueForStatus(store.setStatus(id, to, 'test')!))();
  const at = () => ({ at: new Date().toISOString(), status: 200, error: null, duration_ms: 1 });
  const ok = (d: Delivery) => ({ d, outcome: { kind: 'delivered' as const, attempt: at() } });
  const events = () =>
    ob
      .list({ integrationId: i.id, limit: 50 })
      .reverse()
      .map((d) => d.event);
  return { i, ob, ingest, status, ok, at, events };
}

describe('a stateful receiver after a late firing', () => {
  it('gets a resolved after a firing that was in flight together with the resolved', () => {
    const { i, ob, ingest, status, ok, events } = setup();
    const a = ingest();
    ob.enqueueForAlerts([a]);
    const now = Date.now();
    const [firing] = ob.claim(i.id, 10, now, 600_000);
    status(a.id, 'resolved');
    // Past any grouping wait; the firing is still leased.
    const [resolved] = ob.claim(i.id, 10, now + 60_000, 600_000);
    expect([firing?.event, resolved?.event]).toEqual(['triggered', 'resolved']);
    ob.finish([ok(firing!), ok(resolved!)]);
    expect(events()).toEqual(['triggered', 'resolved', 'resolved']);
  });

  it('gets a new resolved when the alert resolves again after a late firing that followed a same-id reopen', () => {
    const { i, ob, ingest, status, ok, at, events } = setup();
    const a = ingest();
    ob.enqueueForAlerts([a]);
    const now = Date.now();
    const [firing] = ob.claim(i.id, 10, now, 5000);
    ob.finish([{ d: firing!, outcome: { kind: 'retry', at: now + 10_000, attempt: { ...at(), status: 503, error: 'restarting' } } }]);
    status(a.id, 'resolved');
    ob.finish(ob.claim(i.id, 10, now + 1000, 5000).map(ok));
    status(a.id, 'triggered');
    const late = ob.claim(i.id, 10, now + 11_000, 5000);
    expect(late.map((d) => d.event)).toEqual(['triggered']);
    ob.finish(late.map(ok));
    status(a.id, 'resolved');
    const last = ob.list({ integrationId: i.id, limit: 50 })[0]!;
    expect(events()).toEqual(['triggered', 'resolved', 'resolved']);
    expect(last).toMatchObject({ event: 'resolved', state: 'pending' });
  });
});
