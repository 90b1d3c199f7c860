import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { type AgentFrame, type KubernetesApiTunnelClient, KubernetesApiTunnelService, type ServerFrame } from '../../gen/verdict/kubernetes_api.js';

// KubernetesApiTunnel.Connect with its messages encoded as the generated code
// encodes them (the same bytes on the wire), except for the one kind that
// carries the bodies: a data frame is written with one copy of its bytes,
// not three (the writer's, Buffer.from's, then grpc-js's own), and read as a
// view of the received message, not a copy. On a large list those copies
// and the garbage they leave were a good part of each side's CPU.

const DATA_TAG = 0x12; // field 2 (data), length-delimited

function encodeData(value: Uint8Array): Buffer {
  const n = value.length;
  let head = 2;
  for (let v = n; v > 0x7f; v >>>= 7) head++;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = DATA_TAG;
  let i = 1;
  let v = n;
  for (; v > 0x7f; v >>>= 7) out[i++] = (v & 0x7f) | 0x80;
  out[i] = v;
  out.set(value, head);
  return out;
}

/** The data of a message that is a data frame and nothing else, as a view; undefined for any other message. */
function decodeData(buf: Buffer): Buffer | undefined {
  if (buf[0] !== DATA_TAG) return undefined;
  let n = 0;
  let shift = 0;
  let i = 1;
  for (; i < buf.length && i < 6; i++) {
    const b = buf[i]!;
    n += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) return i + 1 + n === buf.length ? buf.subarray(i + 1) : undefined;
  }
  return undefined;
}

const generated = KubernetesApiTunnelService.connect;

export const TunnelService = {
  connect: {
    ...generated,
    requestSerialize: (f: AgentFrame): Buffer => (f.msg?.$case === 'data' ? encodeData(f.msg.value) : generated.requestSerialize(f)),
    requestDeserialize: (b: Buffer): AgentFrame => {
      const value = decodeData(b);
      return value ? { msg: { $case: 'data', value } } : generated.requestDeserialize(b);
    },
    responseSerialize: (f: ServerFrame): Buffer => (f.msg?.$case === 'data' ? encodeData(f.msg.value) : generated.responseSerialize(f)),
    responseDeserialize: (b: Buffer): ServerFrame => {
      const value = decodeData(b);
      return value ? { msg: { $case: 'data', value } } : generated.responseDeserialize(b);
    },
  },
} as const;

export const TunnelClient = makeGenericClientConstructor(
  TunnelService,
  'verdict.kubernetes_api.v1.KubernetesApiTunnel',
) as unknown as typeof KubernetesApiTunnelClient;
