// Alertmanager receivers keep an alert open or closed by its labels: a firing
// that reaches them after the resolved opens it again for good. A firing
// delivery still waiting for its retry when the alert resolves is therefore
// not sent (real server store, outbox and worker; a real HTTP receiver).
import { afterEach, describe, expect, it } from 'vitest';
import { SUPERSEDED } from '../../src/server/webhooks/outbox.js';
import { Closers } from '../../src/shared/lifecycle/closers.js';
import { until } from '../helpers/processes.js';
import { falco, harness, type Harness } from './helpers.js';
import { startReceiver } from './receiver.js';

let h: Harness | undefined;
let closers = new Closers();

afterEach(async () => {
  await h?.close();
  h = undefined;
  const c = closers;
  closers = new Closers();
  await c.close();
});

describe('a firing delivery due after its alert resolved', () => {
  it('is not sent to an Alertmanager receiver, which gets the resolved and nothing after it', async () => {
    const r = await startReceiver(closers);
    r.answer = (q) => (q.n === 1 ? { status: 503, body: 'restarting' } : { status: 200 });
    h = harness({
      allow_private_addresses: ['127.0.0.1'],
      integrations: [{ name: 'am', type: 'alertmanager', url: r.url(), timeout: '2s', retry_schedule: ['1s', '1s'] }],
    });
    const a = h.ingest(falco());
    await r.waitForCount(1);
    h.store.setStatus(a.id, 'resolved', 'test');
    const i = h.svc.registry.byName('am')!;
    const firing = () => h!.svc.outbox.list({ integrationId: i.id, limit: 10 }).find((d) => d.event === 'triggered')!;
    // The state the retry ends in: finished without a try.
    await until(() => (firing().state !== 'pending' ? true : undefined), 10_000, 'the firing delivery to be finished');
    expect(firing()).toMatchObject({ state: 'delivered', attempts: 1, last_error: SUPERSEDED });
    await r.waitForCount(2);
    expect(r.requests.map((q) => (JSON.parse(q.body) as { status: string }).status)).toEqual(['firing', 'resolved']);
  });
});
