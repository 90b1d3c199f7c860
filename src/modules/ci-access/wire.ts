import { makeGenericClientConstructor } from '@grpc/grpc-js';
import { type AgentFrame, type KubernetesApiTunnelClient, KubernetesApiTunnelService, type ServerFrame } from '../../gen/verdict/kubernetes_api.js';

// KubernetesApiTunnel.Connect with its messages encoded as the generated code
// encodes them (the same bytes on the wire), except for the one kind that
// carries the bodies: a data frame is written with at most one copy of its
// bytes, not three (the writer's, Buffer.from's, then grpc-js's own), none
// when frames.ts built its body behind room for the prefix, and read as a
// view of the received message, not a copy. On a large list those copies
// and the garbage they leave were a good part of each side's CPU.

const DATA_TAG = 0x12; // field 2 (data), length-delimited

/** The bytes of a data frame's protobuf encoding before its body of `size` bytes (tag and length). */
function prefixBytes(size: number): number {
  let head = 2;
  for (let v = size; v > 0x7f; v >>>= 7) head++;
  return head;
}

function writePrefix(out: Buffer, size: number): number {
  out[0] = DATA_TAG;
  let i = 1;
  let v = size;
  for (; v > 0x7f; v >>>= 7) out[i++] = (v & 0x7f) | 0x80;
  out[i] = v;
  return i + 1;
}

// Bodies built by dataFrameBody, to the encoded frame around them.
const encoded = new WeakMap<Uint8Array, Buffer>();

/** How large a buffer dataFrameBody needs for a body of `size` bytes. */
export function dataFrameBytes(size: number): number {
  return prefixBytes(size) + size;
}

/**
 * Copies `parts` (`size` bytes in all) into `into` behind a data frame's
 * protobuf prefix and returns them as a view: encoding a data frame with that
 * value returns the encoded frame as it stands, no copy. `into` must hold
 * dataFrameBytes(size) bytes and must not change until the frame's write
 * has called back (grpc-js has copied it by then).
 */
export function dataFrameBody(parts: readonly Buffer[], size: number, into: Buffer): Buffer {
  const head = writePrefix(into, size);
  let at = head;
  for (const p of parts) at += p.copy(into, at);
  const value = into.subarray(head, head + size);
  encoded.set(value, into.subarray(0, head + size));
  return value;
}

function encodeData(value: Uint8Array): Buffer {
  const whole = encoded.get(value);
  if (whole) return whole;
  const n = value.length;
  const out = Buffer.allocUnsafe(prefixBytes(n) + n);
  out.set(value, writePrefix(out, n));
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
