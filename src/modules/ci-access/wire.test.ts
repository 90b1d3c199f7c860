import { describe, expect, it } from 'vitest';
import { AgentFrame, KubernetesApiTunnelService, ServerFrame } from '../../gen/verdict/kubernetes_api.js';
import { dataFrameBody, dataFrameBytes, TunnelService } from './wire.js';

// The hand-written data-frame codec must be byte for byte the generated one,
// so agents and servers of either kind (and other protobuf readers) agree.

const ours = TunnelService.connect;
const generated = KubernetesApiTunnelService.connect;
const sizes = [0, 1, 127, 128, 16_383, 16_384, 300_000];

describe('the tunnel codec', () => {
  it('writes data frames as the generated code does, both ways', () => {
    for (const n of sizes) {
      const value = Buffer.alloc(n, n % 251);
      expect(ours.requestSerialize({ msg: { $case: 'data', value } }).equals(generated.requestSerialize({ msg: { $case: 'data', value } }))).toBe(true);
      expect(ours.responseSerialize({ msg: { $case: 'data', value } }).equals(generated.responseSerialize({ msg: { $case: 'data', value } }))).toBe(true);
    }
  });

  it('writes a body built behind room for its prefix as the generated code writes it, the body read back unchanged', () => {
    for (const n of sizes) {
      const bytes = Buffer.from(Array.from({ length: n }, (_, i) => i % 253));
      const parts = [bytes.subarray(0, n >> 2), bytes.subarray(n >> 2, n >> 1), bytes.subarray(n >> 1)];
      // A pooled buffer is larger than the frame and holds an earlier frame's bytes.
      const into = Buffer.alloc(dataFrameBytes(n) + 100, 0xee);
      const value = dataFrameBody(parts, n, into);
      expect(value.equals(bytes)).toBe(true);
      const wire = ours.requestSerialize({ msg: { $case: 'data', value } });
      expect(wire.equals(generated.requestSerialize({ msg: { $case: 'data', value: bytes } }))).toBe(true);
      expect(wire.buffer).toBe(into.buffer);
      expect(ours.responseDeserialize(wire)).toEqual({ msg: { $case: 'data', value: bytes } });
    }
  });

  it('reads what the generated code writes, data frames and the rest', () => {
    const frames: AgentFrame[] = [
      ...sizes.map((n): AgentFrame => ({ msg: { $case: 'data', value: Buffer.alloc(n, 7) } })),
      {
        msg: { $case: 'header', value: { status: 200, headers: { 'content-type': { values: ['application/json'] } }, body: Buffer.alloc(0), end: undefined } },
      },
      {
        msg: {
          $case: 'header',
          value: { status: 404, headers: {}, body: Buffer.from('{"kind":"Status"}'), end: { trailers: {}, next: true } },
        },
      },
      { msg: { $case: 'end', value: { trailers: {}, next: false } } },
      { msg: undefined },
    ];
    for (const f of frames) expect(ours.requestDeserialize(generated.requestSerialize(f))).toEqual(AgentFrame.decode(generated.requestSerialize(f)));
    const header: ServerFrame = {
      msg: { $case: 'header', value: { method: 'GET', uri: '/api', headers: {}, impersonation: undefined, job_id: 3, project: 'a/b', whole_responses: true } },
    };
    expect(ours.responseDeserialize(generated.responseSerialize(header))).toEqual(ServerFrame.decode(generated.responseSerialize(header)));
    // A data field followed by more bytes is not a bare data frame: the generated decoder reads it.
    const odd = Buffer.concat([generated.responseSerialize({ msg: { $case: 'data', value: Buffer.from('ab') } }), Buffer.from([0x12, 0x01, 0x63])]);
    expect(ours.responseDeserialize(odd)).toEqual(ServerFrame.decode(odd));
  });
});
