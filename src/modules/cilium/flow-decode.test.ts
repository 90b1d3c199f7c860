import { BinaryReader, BinaryWriter } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { Endpoint, Flow } from '../../gen/flow/flow.js';
import { decodeFlow } from './flow-decode.js';
import { makeFlows, rand } from './policy/bench-data.js';

/** The flow's bytes inside other bytes, as a chunk of Relay's stream holds it. */
function inChunk(bytes: Uint8Array): { buf: Uint8Array; at: number } {
  const buf = new Uint8Array(bytes.length + 7);
  buf.fill(0xff);
  buf.set(bytes, 3);
  return { buf, at: 3 };
}

function decode(bytes: Uint8Array): Flow {
  const { buf, at } = inChunk(bytes);
  const r = new BinaryReader(buf);
  (r as { len: number }).len = at + bytes.length;
  const f = decodeFlow(r, buf, at, bytes.length);
  expect(r.pos).toBe(at + bytes.length);
  return f;
}

const base = Flow.decode(new Uint8Array(0));
const ep = (e: Partial<Endpoint>): Endpoint => ({ ...Endpoint.decode(new Uint8Array(0)), ...e });
const full: Flow = {
  ...base,
  time: { seconds: 1_700_000_000, nanos: 5 },
  verdict: 2,
  drop_reason: 133,
  IP: { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 1, encrypted: false },
  l4: { protocol: { $case: 'TCP', value: { source_port: 40000, destination_port: 443, flags: undefined } } },
  source: ep({
    ID: 7,
    identity: 1234,
    namespace: 'shop',
    labels: ['k8s:app=web', 'k8s:io.kubernetes.pod.namespace=shop'],
    pod_name: 'web-1',
    workloads: [{ name: 'web', kind: 'Deployment' }],
  }),
  destination: ep({ identity: 4321, namespace: 'db', labels: ['k8s:app=pg'], pod_name: 'pg-0', cluster_name: 'c1' }),
  node_name: 'node-1',
  source_names: ['a.example'],
  uuid: 'u-1',
  event_type: { type: 5, sub_type: 0 },
  traffic_direction: 1,
  node_labels: ['kubernetes.io/hostname=node-1'],
  egress_denied_by: [{ name: 'deny', namespace: 'shop', labels: [], revision: 3, kind: 'CiliumNetworkPolicy' }],
};

describe('decodeFlow', () => {
  it('gives what Flow.decode gives, for flows with and without endpoints', () => {
    const flows = [
      Flow.encode(full).finish(),
      Flow.encode({ ...full, source: undefined }).finish(),
      Flow.encode({ ...full, destination: undefined }).finish(),
      Flow.encode({ ...full, source: undefined, destination: undefined }).finish(),
      new Uint8Array(0),
      ...makeFlows(50, rand(3)),
    ];
    for (const b of flows) expect(decode(b)).toEqual(Flow.decode(b));
  });

  it('reads any time as Flow.decode does', () => {
    const times = [
      { seconds: 0, nanos: 0 },
      { seconds: 0, nanos: 999_999_999 },
      { seconds: 1_700_000_000, nanos: 0 },
      { seconds: 2 ** 49 - 1, nanos: 1 },
      { seconds: 2 ** 52, nanos: 1 },
      { seconds: -1, nanos: 5 },
      { seconds: 5, nanos: -1 },
    ];
    for (const time of times) {
      const b = Flow.encode({ ...full, time }).finish();
      expect(decode(b).time).toEqual(time);
      expect(decode(b)).toEqual(Flow.decode(b));
    }
    // A field Timestamp does not have, and the seconds sent twice (the last counts).
    const w = new BinaryWriter();
    w.uint32(10)
      .fork()
      .uint32(8)
      .int64(7)
      .uint32((3 << 3) | 0)
      .uint32(1)
      .uint32(8)
      .int64(9)
      .uint32(16)
      .int32(3)
      .join();
    const b = new Uint8Array([...w.finish(), ...Flow.encode({ ...full, time: undefined }).finish()]);
    expect(decode(b)).toEqual(Flow.decode(b));
    expect(decode(b).time).toEqual({ seconds: 9, nanos: 3 });
  });

  it('skips fields it does not know, as Flow.decode does', () => {
    const w = new BinaryWriter();
    w.uint32((4 << 3) | 2).string('an unknown string');
    w.uint32((40 << 3) | 0).uint64(1n << 60n);
    w.uint32((41 << 3) | 1).fixed64(9n);
    w.uint32((42 << 3) | 5).fixed32(9);
    const b = new Uint8Array([...w.finish(), ...Flow.encode(full).finish()]);
    expect(decode(b)).toEqual(Flow.decode(b));
    expect(decode(b).source?.pod_name).toBe('web-1');
  });

  it('takes the last of an endpoint sent twice, as Flow.decode does', () => {
    const once = Flow.encode(full).finish();
    const again = new BinaryWriter();
    Endpoint.encode(
      { ID: 0, identity: 99, namespace: '', labels: ['k8s:more=yes'], pod_name: '', workloads: [], cluster_name: '' },
      again.uint32(66).fork(),
    ).join();
    const b = new Uint8Array([...once, ...again.finish()]);
    const f = decode(b);
    expect(f).toEqual(Flow.decode(b));
    expect(f.source?.labels).toEqual(['k8s:more=yes']);
    expect(f.source?.identity).toBe(99);
  });

  it('shares one frozen endpoint, address pair and event type between flows that carry the same bytes for it', () => {
    const a = decode(Flow.encode({ ...full, uuid: 'a' }).finish());
    const b = decode(Flow.encode({ ...full, uuid: 'b', l4: undefined }).finish());
    expect(b.source).toBe(a.source);
    expect(b.destination).toBe(a.destination);
    expect(b.IP).toBe(a.IP);
    expect(b.event_type).toBe(a.event_type);
    expect(Object.isFrozen(a.IP)).toBe(true);
    expect(Object.isFrozen(a.event_type)).toBe(true);
    expect(Object.isFrozen(a.source)).toBe(true);
    expect(Object.isFrozen(a.source!.labels)).toBe(true);
    expect(Object.isFrozen(a.source!.workloads[0])).toBe(true);
    const other = decode(Flow.encode({ ...full, source: { ...full.source!, pod_name: 'web-2' } }).finish());
    expect(other.source).not.toBe(a.source);
    expect(other.source?.pod_name).toBe('web-2');
    const moved = decode(Flow.encode({ ...full, IP: { ...full.IP!, source: '10.0.0.9' }, node_name: 'node-2' }).finish());
    expect(moved.IP).not.toBe(a.IP);
    expect(moved.IP?.source).toBe('10.0.0.9');
    expect(moved.node_name).toBe('node-2');
    expect(decode(Flow.encode(full).finish()).node_name).toBe('node-1');
  });

  it('refuses a flow cut short', () => {
    const b = Flow.encode(full).finish();
    const cut = b.subarray(0, b.length - 3);
    const r = new BinaryReader(cut);
    expect(() => decodeFlow(r, cut, 0, cut.length)).toThrow();
  });
});
