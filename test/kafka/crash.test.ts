// A replica killed with SIGKILL in the middle of handing a change to webhooks:
// two `verdict server` replicas on one real broker (scripts/kafka.sh), a real
// webhook receiver, alerts published over the real agent API. The kill is
// made deterministic by `verdict server --test-kill-delivery-at` (src/cli/server.ts),
// which kills the replica at one step of the first hand-on that records a
// delivery, before the delivery group's offset is committed:
//   after_outbox: deliveries committed in its outbox, their claims not yet in the log;
//   after_claims: claims in the log too.
// Either way the receiver must see at most one distinct webhook-id per change.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { stableWebhookId } from '../../src/server/webhooks/signer.js';
import { killAll, until } from '../helpers/processes.js';
import { Receiver } from '../webhooks/receiver.js';
import { verifyStandardWebhook } from '../webhooks/standard-webhooks.js';
import { assigned, fingerprintIn, KILL_LOG, killablePair, PARTITIONS, partitionOf, publish, type Replica, SECRET, startReplica as start } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-crash-'));
let broker: Broker | undefined;
const rx = new Receiver();

interface Hook {
  id: string;
  type: string;
  fingerprint: string;
}

/** What the receiver got for one alert, by webhook-id and event type. */
function hooksFor(fp: string): Hook[] {
  const out: Hook[] = [];
  for (const q of rx.requests) {
    const doc = JSON.parse(q.body) as { type: string; data: { alerts: { fingerprint: string }[] } };
    for (const a of doc.data.alerts) if (a.fingerprint === fp) out.push({ id: String(q.headers['webhook-id']), type: doc.type, fingerprint: fp });
  }
  return out;
}

const yaml = (prefix: string) => (r: Replica) =>
  `data_dir: ${r.dataDir}
http_addr: ${r.http}
grpc_addr: ${r.grpc}
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: rx
      type: generic
      url: ${rx.url()}
      secrets: [${SECRET}]
      retry_schedule: [200ms, 500ms, 1s]
kafka:
  brokers: [${broker!.bootstrap}]
  topic_prefix: ${prefix}
  export_topic: ""
  partitions: ${PARTITIONS}
  session_timeout: 6s
`;

/** Two replicas A (killed by the fault injection) and B, each delivering for half of the partitions. */
function pair(killAt: 'after_outbox' | 'after_claims') {
  const prefix = `crash${randomUUID().slice(0, 8)}`;
  return killablePair(dir, prefix, killAt, yaml(prefix));
}

async function killedByFault(r: Replica): Promise<void> {
  await r.proc!.waitForLog((l) => KILL_LOG.test(l.msg), 30_000, `replica ${r.name} to be killed by the fault injection`);
  await r.proc!.exited;
  expect(r.proc!.proc.signalCode).toBe('SIGKILL');
}

async function expectReady(r: Replica): Promise<void> {
  await until(async () => ((await fetch(`http://${r.http}/readyz`)).status === 200 ? true : undefined), 30_000, `replica ${r.name} ready`);
  expect((await fetch(`http://${r.http}/healthz`)).status).toBe(200);
}

/** At most one distinct webhook-id per change (alert and event), and it is the one derived from the alert. */
function expectOneIdPerChange(fp: string, eventId: string): void {
  const hooks = hooksFor(fp);
  const byType = new Map<string, Set<string>>();
  for (const h of hooks) (byType.get(h.type) ?? byType.set(h.type, new Set()).get(h.type)!).add(h.id);
  for (const [type, ids] of byType) {
    expect([...ids], `${fp} ${type}`).toEqual([stableWebhookId('rx', `edge/${fp}/${eventId}`, type.replace(/^alert\./, ''))]);
  }
}

beforeAll(async () => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  await rx.listen();
}, 320_000);

afterAll(async () => {
  await killAll();
  await rx.close();
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('a replica killed between recording webhook deliveries and committing the delivery offset', () => {
  it('after the outbox, before the claims: the next owner sends it again under the same webhook-id', async () => {
    const { a, b, token, partitionsOfA, partitionsOfB } = await pair('after_outbox');
    const x = fingerprintIn(partitionsOfA, 'x1');
    const y = fingerprintIn(partitionsOfB, 'y1');
    const [ex, ey] = await publish(a, token, [x, y]);
    await killedByFault(a);

    // B takes A's partitions once A's session times out, and records X again:
    // A's claims never reached the log.
    await rx.waitFor(() => hooksFor(x).length >= 1 && hooksFor(y).length >= 1, 60_000, 'X from replica B');
    expect(assigned(b)).toHaveLength(PARTITIONS);
    // A comes back and sends what its outbox still holds: the same delivery, same webhook-id.
    await start(a);
    await rx.waitFor(() => hooksFor(x).length >= 2, 30_000, 'X again from replica A');
    await expectReady(a);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(hooksFor(x).map((h) => h.type)).toEqual(['alert.triggered', 'alert.triggered']);
    expectOneIdPerChange(x, ex!);
    expect(hooksFor(y)).toHaveLength(1);
    expectOneIdPerChange(y, ey!);
    const last = rx.requests.findLast((q) => q.body.includes(x))!;
    await verifyStandardWebhook(SECRET, last.headers, last.body);
    await Promise.all([a.proc!.kill(), b.proc!.kill()]);
  }, 180_000);

  it('after the claims: the next owner takes them over and sends nothing twice, and resolves what the dead replica opened', async () => {
    const { a, b, token, feedToken, partitionsOfA } = await pair('after_claims');
    const x = fingerprintIn(partitionsOfA, 'x2');
    const [ex] = await publish(a, token, [x]);
    await killedByFault(a);

    // Z lands in X's partition after it: once B delivers Z, it has handled X (in log order).
    const z = fingerprintIn([partitionOf(x)], 'z2');
    const [ez] = await publish(b, token, [z]);
    await rx.waitFor(() => hooksFor(z).length >= 1, 60_000, 'Z from replica B');
    expect(assigned(b)).toHaveLength(PARTITIONS);
    // B took A's claim over, so it does not send X's opening. A may have sent it
    // already: its outbox is sent apart from the claims, and it died only once
    // the claims were in the log.
    expect(hooksFor(x).map((h) => h.type)).toEqual(hooksFor(x).length ? ['alert.triggered'] : []);

    // The partition stays with B while A is down: B knows from A's claims that X was
    // opened to the receiver, so it sends X's resolution.
    const headers = { authorization: `Bearer ${feedToken}`, 'content-type': 'application/json' };
    const list = (await (await fetch(`http://${b.http}/api/v1/alerts?limit=100`, { headers })).json()) as { alerts: { id: number; fingerprint: string }[] };
    const onB = list.alerts.find((al) => al.fingerprint === x)!;
    const res = await fetch(`http://${b.http}/api/v1/alerts/${onB.id}`, { method: 'PATCH', headers, body: JSON.stringify({ status: 'resolved' }) });
    expect(res.status, await res.clone().text()).toBe(200);
    await rx.waitFor(() => hooksFor(x).some((h) => h.type === 'alert.resolved'), 30_000, 'X resolved from replica B');

    // A comes back and sends X's opening, which its outbox held: once in all to a receiver that
    // de-duplicates on webhook-id, as docs/kafka.md promises. A that sent it just before dying,
    // without recording that it had, sends it again under the same webhook-id (at least once).
    await start(a);
    await rx.waitFor(() => hooksFor(x).some((h) => h.type === 'alert.triggered'), 30_000, 'X triggered from replica A');
    await expectReady(a);
    await new Promise((r) => setTimeout(r, 1_500));
    expect([...new Map(hooksFor(x).map((h) => [h.id, h.type])).values()].sort()).toEqual(['alert.resolved', 'alert.triggered']);
    expectOneIdPerChange(x, ex!);
    expect(hooksFor(z)).toHaveLength(1);
    expectOneIdPerChange(z, ez!);
    await Promise.all([a.proc!.kill(), b.proc!.kill()]);
  }, 180_000);
});
