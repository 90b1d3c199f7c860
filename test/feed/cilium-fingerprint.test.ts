import { describe, expect, it } from 'vitest';
import { flowToAlert } from '../../src/modules/cilium/to-alert.js';
import type { Attribution } from '../../src/modules/cilium/policy/attribution.js';
import { flowJson, pod } from '../../src/modules/cilium/policy/testing.js';
import { AlertStore } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { flowFromJson } from '../../src/modules/cilium/flow-json.js';

// The feed groups occurrences by the fingerprint the agent computes
// (src/modules/cilium/to-alert.ts). For Cilium it must leave out what changes
// per connection: the ephemeral source port, the time and the TCP flags, so
// that retries of one blocked connection are one alert with a count.

const att: Attribution = { direction: 'ingress', reason: 'POLICY_DENIED', policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'prod', name: 'api-ingress' }] };
const src = pod('prod', 'web');
const dst = pod('prod', 'api');

/** A dropped flow as Hubble reports it, with the per-connection fields set. */
function drop(o: { srcPort: number; time: string; flags: Record<string, boolean>; port?: number }) {
  const j = flowJson({ src, dst, port: o.port ?? 8443, srcPort: o.srcPort }) as { flow: Record<string, any> };
  j.flow.time = o.time;
  j.flow.l4.TCP.flags = o.flags;
  const flow = flowFromJson(j);
  // The decoded flow carries the flags (they are not lost before the fingerprint is taken).
  const l4 = flow.l4?.protocol;
  expect(
    l4?.$case === 'TCP'
      ? Object.entries(l4.value.flags ?? {})
          .filter(([, v]) => v)
          .map(([k]) => k)
          .sort()
      : [],
  ).toEqual(Object.keys(o.flags).sort());
  return flowToAlert(flow, att, 'c1', j.flow);
}

describe('Cilium fingerprint as the feed groups by it', () => {
  it('leaves out the source port, the time and the TCP flags; the destination port still counts', () => {
    const alerts = [
      drop({ srcPort: 40312, time: '2024-05-01T10:00:00.000Z', flags: { SYN: true } }),
      drop({ srcPort: 51877, time: '2024-05-01T10:00:03.250Z', flags: { SYN: true, ECE: true, CWR: true } }),
      drop({ srcPort: 60999, time: '2024-05-01T11:42:00.000Z', flags: { ACK: true, PSH: true } }),
      drop({ srcPort: 33000, time: '2024-05-02T00:00:00.000Z', flags: { RST: true } }),
    ];
    // The inputs really differ in those fields.
    expect(new Set(alerts.map((a) => a.cilium!.source.port)).size).toBe(4);
    expect(new Set(alerts.map((a) => a.first_seen)).size).toBe(4);
    expect(new Set(alerts.map((a) => a.fingerprint)).size).toBe(1);
    const otherPort = drop({ srcPort: 40312, time: '2024-05-01T10:00:00.000Z', flags: { SYN: true }, port: 8444 });
    expect(otherPort.fingerprint).not.toBe(alerts[0]!.fingerprint);

    // End to end in the store: one alert counting the four, spanning their times; the other port is its own.
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    store.ingest(
      'edge',
      [...alerts, otherPort].map((payload, i) => ({ id: `fp-${i}`, payload })),
    );
    const listed = store.list({ limit: 10, sort: 'count' }).alerts;
    expect(listed.map((a) => a.count)).toEqual([4, 1]);
    expect(listed[0]).toMatchObject({ first_seen: '2024-05-01T10:00:00.000Z', last_seen: '2024-05-02T00:00:00.000Z', events: 4 });
    // The bounded sample keeps the raw flows, ports and flags included.
    const samples = store.get(listed[0]!.id)!.samples as { l4: { TCP: { source_port: number } } }[];
    expect(samples.map((s) => s.l4.TCP.source_port)).toEqual([40312, 51877, 60999, 33000]);
    db.close();
  });
});
