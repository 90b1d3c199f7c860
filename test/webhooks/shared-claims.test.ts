import { afterEach, describe, expect, it } from 'vitest';
import { AlertStore, type StoredAlert } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import type { KeyedAlert } from '../../src/server/webhooks/outbox.js';
import { startWebhooks, type WebhooksService } from '../../src/server/webhooks/service.js';
import { newWebhookId, stableWebhookId } from '../../src/server/webhooks/signer.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import type { DB } from '../../src/shared/sqlite/open.js';
import { falco, FAST, SECRET, silent } from './helpers.js';
import { Closers } from '../../src/shared/lifecycle/closers.js';
import { type Receiver, startReceiver } from './receiver.js';

// What server replicas on Kafka need from the outbox (src/server/kafka/delivery.ts):
// webhook-ids derived from the alert and event, so two replicas that record the
// same delivery give it one id, and claims that one replica publishes and
// another takes over, so the second records nothing twice and can still
// resolve what the first opened.

interface Replica {
  db: DB;
  store: AlertStore;
  svc: WebhooksService;
  /** Stores an event; returns the alert with its replica-independent key. */
  ingest(eventId: string, fp: string, count?: number): { alert: StoredAlert; key: string };
}

/** What a test opened (receivers, replicas), closed after it in reverse order. */
let closers = new Closers();

afterEach(async () => {
  const c = closers;
  closers = new Closers();
  await c.close();
});

function replica(rx: Receiver, extra: Record<string, unknown> = {}): Replica {
  const db = openServerDb(':memory:');
  const store = new AlertStore(db);
  const svc = startWebhooks({
    db,
    store,
    log: silent,
    enqueueOnStore: false,
    worker: { jitter: false, pollMs: 100 },
    config: parseWebhooksJson({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'rx', type: 'generic', url: rx.url(), secrets: [SECRET], ...FAST, ...extra }],
    }),
  });
  const r: Replica = {
    db,
    store,
    svc,
    ingest(eventId, fp, count = 1) {
      const alert = store.ingest('edge', [{ id: eventId, payload: falco({ fingerprint: fp, count }) }]).alerts[0]!;
      return { alert, key: `edge/${fp}/${eventId}` };
    },
  };
  return closers.add('replica', r, async (x) => {
    await x.svc.close();
    x.db.close();
  });
}

const receiver = () => startReceiver(closers);

const shared = (r: Replica, alerts: KeyedAlert[]) => r.db.transaction(() => r.svc.outbox.enqueueShared(alerts))();
const ids = (r: Replica) =>
  r.svc.outbox
    .list({ integrationId: r.svc.registry.byName('rx')!.id, limit: 100 })
    .map((d) => `${d.event}:${d.webhook_id}`)
    .sort();

describe('webhook claims shared between replicas', () => {
  it('derives the webhook-id from integration, alert and event: the same on every replica, distinct otherwise', () => {
    const id = stableWebhookId('rx', 'edge/fp/ev-1', 'triggered');
    expect(id).toMatch(/^msg_[\w-]{22}$/);
    expect(id).toHaveLength(newWebhookId().length);
    expect(stableWebhookId('rx', 'edge/fp/ev-1', 'triggered')).toBe(id);
    for (const other of [
      stableWebhookId('rx2', 'edge/fp/ev-1', 'triggered'),
      stableWebhookId('rx', 'edge/fp/ev-2', 'triggered'),
      stableWebhookId('rx', 'edge/fp/ev-1', 'resolved'),
    ])
      expect(other).not.toBe(id);
  });

  it('records the same delivery under the same webhook-id on two replicas that both handle a change', async () => {
    const rx = await receiver();
    const [a, b] = [replica(rx), replica(rx)];
    const onA = a.ingest('ev-1', 'fp-1');
    const onB = b.ingest('ev-1', 'fp-1');
    const ra = shared(a, [onA]);
    const rb = shared(b, [onB]);
    expect(ra.deliveries).toBe(1);
    expect(ra.claims).toEqual([{ integration: 'rx', alert: 'edge/fp-1/ev-1', event: 'triggered' }]);
    expect(rb.claims).toEqual(ra.claims);
    expect(ids(a)).toEqual([`triggered:${stableWebhookId('rx', 'edge/fp-1/ev-1', 'triggered')}`]);
    expect(ids(b)).toEqual(ids(a));
    // Both send it; a receiver that de-duplicates on webhook-id processes it once.
    await rx.waitForCount(2);
    expect(new Set(rx.requests.map((q) => q.headers['webhook-id'])).size).toBe(1);
  });

  it('records nothing on a replica that took over the claims, and resolves there what the other opened', async () => {
    const rx = await receiver();
    const [a, b] = [replica(rx, { repeat_milestones: [10] }), replica(rx, { repeat_milestones: [10] })];
    const onA = a.ingest('ev-1', 'fp-1', 12);
    const onB = b.ingest('ev-1', 'fp-1', 12);
    const { claims } = shared(a, [onA]);
    // The opening delivery carries the count: the milestone it passed is claimed silently, and shared too.
    expect(claims.map((c) => c.event).sort()).toEqual(['repeated:10', 'triggered']);
    const alertId = (key: string) => (key === onB.key ? onB.alert.id : undefined);
    expect(b.db.transaction(() => b.svc.outbox.applyClaims(claims, alertId))()).toBe(2);
    // Applying again changes nothing (every replica reads every claim, its own included).
    expect(b.svc.outbox.applyClaims(claims, alertId)).toBe(0);
    expect(shared(b, [onB])).toEqual({ deliveries: 0, claims: [] });
    expect(ids(b)).toEqual([]);

    // B owns the alert's partition now: it resolves what A opened, under the id A would have used.
    const resolved = b.store.setStatus(onB.alert.id, 'resolved', 'alice')!;
    const r = shared(b, [{ alert: resolved, key: onB.key }]);
    expect(r.claims).toEqual([{ integration: 'rx', alert: onB.key, event: 'resolved' }]);
    expect(ids(b)).toEqual([`resolved:${stableWebhookId('rx', onB.key, 'resolved')}`]);
  });

  it('gives a group the webhook-id of exactly its alerts: grouped differently on two replicas, other ids; alike, the same', async () => {
    // After a crash between recording and publishing claims, the next owner can group the
    // dead replica's alerts with others; a receiver de-duplicating on webhook-id must not
    // then drop the alerts only the bigger group carries.
    const rx = await receiver();
    rx.answer = () => ({ status: 500 });
    const window = { group_window: '1m' };
    const [a, b] = [replica(rx, window), replica(rx, window)];
    const [x, z] = ['fp-x', 'fp-z'];
    const onA = a.ingest('ev-x', x);
    shared(a, [onA]);
    const onB = [b.ingest('ev-x', x), b.ingest('ev-z', z)];
    shared(b, [onB[0]!]);
    shared(b, [onB[1]!]);
    const single = stableWebhookId('rx', onA.key, 'triggered');
    expect(ids(a)).toEqual([`triggered:${single}`]);
    const [grown] = ids(b);
    expect(ids(b)).toHaveLength(1);
    expect(grown).not.toBe(`triggered:${single}`);
    // The same alerts grouped on another replica, in another order: the same id.
    const c = replica(rx, window);
    shared(c, [c.ingest('ev-z', z)]);
    shared(c, [c.ingest('ev-x', x)]);
    expect(ids(c)).toEqual([grown]);
  });

  it('skips claims of integrations or alerts this replica does not have', async () => {
    const rx = await receiver();
    const b = replica(rx);
    const onB = b.ingest('ev-1', 'fp-1');
    const n = b.svc.outbox.applyClaims(
      [
        { integration: 'made-elsewhere', alert: onB.key, event: 'triggered' },
        { integration: 'rx', alert: 'edge/purged/ev-0', event: 'triggered' },
      ],
      (key) => (key === onB.key ? onB.alert.id : undefined),
    );
    expect(n).toBe(0);
    expect(shared(b, [onB]).deliveries).toBe(1);
  });

  it('gives alerts without a replica-independent key a random webhook-id and shares no claim for them', async () => {
    const rx = await receiver();
    const a = replica(rx);
    const { alert } = a.ingest('ev-1', 'fp-1');
    const r = shared(a, [{ alert }]);
    expect(r).toEqual({ deliveries: 1, claims: [] });
    expect(ids(a)[0]).not.toBe(`triggered:${stableWebhookId('rx', 'edge/fp-1/ev-1', 'triggered')}`);
  });
});
