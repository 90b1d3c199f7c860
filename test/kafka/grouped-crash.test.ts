// Grouped and Alertmanager deliveries across two `verdict server` replicas on
// one real broker, when one is killed (`--test-kill-delivery-at after_outbox`)
// after recording a delivery and before publishing its claims: the next owner
// records the dead replica's alerts again, grouped with what came since.
//   - group_window: one webhook-id always carries one set of alerts, so a
//     receiver that de-duplicates on webhook-id loses no alert;
//   - Alertmanager: groupKey and labels are the same whichever replica sends,
//     so the resolved notification matches the firing one; and the dead
//     replica's firing, sent from its outbox after it comes back (and after
//     the other replica resolved the alert), is followed by a resolved.
import { createHash, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, stopBroker, type Broker } from '../../src/server/kafka/testing.js';
import { killAll } from '../helpers/processes.js';
import { Receiver } from '../webhooks/receiver.js';
import { fingerprintIn, KILL_LOG, killablePair, PARTITIONS, partitionOf, publish, type Replica, SECRET, startReplica as start } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'verdict-kafka-grouped-'));
let broker: Broker | undefined;
const grouped = new Receiver();
const am = new Receiver();

interface AmDoc {
  groupKey: string;
  status: string;
  groupLabels: Record<string, string>;
  alerts: { status: string; labels: Record<string, string>; fingerprint: string }[];
}

const yaml = (prefix: string) => (r: Replica) =>
  `data_dir: ${r.dataDir}
http_addr: ${r.http}
grpc_addr: ${r.grpc}
webhooks:
  allow_private_addresses: [127.0.0.1]
  integrations:
    - name: gengrp
      type: generic
      url: ${grouped.url()}
      secrets: [${SECRET}]
      group_window: 3s
      retry_schedule: [200ms, 500ms, 1s]
    - name: am
      type: alertmanager
      url: ${am.url()}
      retry_schedule: [200ms, 500ms, 1s]
kafka:
  brokers: [${broker!.bootstrap}]
  topic_prefix: ${prefix}
  export_topic: ""
  partitions: ${PARTITIONS}
  session_timeout: 6s
`;

/** The grouped receiver's requests: webhook-id -> the fingerprints of each request under it. */
function groupedById(): Map<string, string[][]> {
  const out = new Map<string, string[][]>();
  for (const q of grouped.requests) {
    const doc = JSON.parse(q.body) as { data: { alerts: { fingerprint: string }[] } };
    const id = String(q.headers['webhook-id']);
    (out.get(id) ?? out.set(id, []).get(id)!).push(doc.data.alerts.map((a) => a.fingerprint).sort());
  }
  return out;
}

/** The Alertmanager notifications about an alert (found by the `fingerprint` field, the same in every version). */
const amOf = (fp: string) => {
  const hash = createHash('sha256').update(`edge/${fp}`).digest('hex').slice(0, 16);
  return am.requests.map((q) => JSON.parse(q.body) as AmDoc).filter((d) => d.alerts.some((al) => al.fingerprint === hash));
};
const amFor = (fp: string, status: string) => amOf(fp).filter((d) => d.status === status);

beforeAll(async () => {
  broker = startBroker(mkdtempSync(join(tmpdir(), 'verdict-kafka-state-')));
  await grouped.listen();
  await am.listen();
}, 320_000);

afterAll(async () => {
  await killAll();
  await grouped.close();
  await am.close();
  try {
    if (broker) stopBroker(broker);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe('grouped and Alertmanager deliveries when a replica dies after recording them', () => {
  it('sends one set of alerts per webhook-id, and Alertmanager groupKeys and labels that do not depend on the replica', async () => {
    const prefix = `grp${randomUUID().slice(0, 8)}`;
    const { a, b, token, feedToken, partitionsOfA } = await killablePair(dir, prefix, 'after_outbox', yaml(prefix));

    // X is recorded by A (a group of one, and an Alertmanager firing), which dies before its claims are in the log.
    const x = fingerprintIn(partitionsOfA, 'gx');
    await publish(a, token, [x]);
    await a.proc!.waitForLog((l) => KILL_LOG.test(l.msg), 30_000, 'replica a to be killed by the fault injection');
    await a.proc!.exited;
    // Z comes after X in the same partition: B, taking A's partitions over, groups X with Z.
    const z = fingerprintIn([partitionOf(x)], 'gz');
    await publish(b, token, [z]);
    await grouped.waitFor(() => [...groupedById().values()].flat(2).includes(z), 60_000, 'the group with Z from replica B');
    await am.waitFor(() => amOf(x).length >= 1, 30_000, 'X firing from replica B');

    // B resolves X, which only B's outbox knows was sent firing (A's claims never reached the log).
    const headers = { authorization: `Bearer ${feedToken}`, 'content-type': 'application/json' };
    const list = (await (await fetch(`http://${b.http}/api/v1/alerts?limit=100`, { headers })).json()) as { alerts: { id: number; fingerprint: string }[] };
    const onB = list.alerts.find((al) => al.fingerprint === x)!;
    const res = await fetch(`http://${b.http}/api/v1/alerts/${onB.id}`, { method: 'PATCH', headers, body: JSON.stringify({ status: 'resolved' }) });
    expect(res.status, await res.clone().text()).toBe(200);
    await am.waitFor(() => amFor(x, 'resolved').length >= 1, 30_000, 'X resolved from replica B');

    // A comes back and sends what its outbox holds: X alone in its group, and X firing, which reaches the
    // receiver after B's resolved: A's worker starts before A has read the resolution from the log.
    const firingBefore = amFor(x, 'firing').length;
    const resolvedBefore = amFor(x, 'resolved').length;
    const groupsBefore = grouped.requests.length;
    await start(a);
    await am.waitFor(() => amFor(x, 'firing').length > firingBefore, 30_000, 'X firing from replica A');
    await grouped.waitFor(() => grouped.requests.length > groupsBefore, 30_000, "A's group");
    // Reading B's resolved claim for X, A follows its late firing with a resolved, so X is not left open.
    await am.waitFor(() => amFor(x, 'resolved').length > resolvedBefore, 30_000, 'X resolved again from replica A');

    // Every webhook-id carries one set of alerts; the distinct ids together carry X and Z.
    const byId = groupedById();
    for (const [id, sets] of byId) for (const s of sets) expect(s, id).toEqual(sets[0]);
    const kept = new Set([...byId.values()].flatMap((sets) => sets[0]!));
    expect([...kept].sort()).toEqual([x, z].sort());

    // B's firing and resolved, then A's late firing and the resolved that follows it: X ends resolved at the
    // receiver; one groupKey, one label set.
    const docs = amOf(x);
    expect(docs.map((d) => d.status)).toEqual(['firing', 'resolved', 'firing', 'resolved']);
    const key = `{}/{verdict_integration="am"}:{agent="edge",verdict_fingerprint="${x}"}`;
    for (const d of docs) {
      expect(d.groupKey).toBe(key);
      expect(d.alerts[0]!.labels).toEqual(docs[0]!.alerts[0]!.labels);
      expect(Object.keys(d.alerts[0]!.labels)).not.toContain('verdict_alert_id');
    }
    await Promise.all([a.proc!.kill(), b.proc!.kill()]);
  }, 240_000);
});
