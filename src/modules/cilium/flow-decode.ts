import { BinaryReader } from '@bufbuild/protobuf/wire';
import { Endpoint, Flow } from '../../gen/flow/flow.js';

// A flow's source and destination (fields 8 and 9) are most of its bytes, most
// of its decoding (a dozen label strings each) and most of what the garbage
// collector then sweeps up; yet a cluster's flows come from a few thousand
// endpoints, each sent as the same bytes again and again. So an endpoint is
// decoded once and shared by every flow that carries the same bytes: a flow
// costs a hash and a comparison of those bytes instead. The shared endpoints
// are frozen (a flow's reader must not change what other flows hold); the
// rest of the flow is decoded as Flow.decode does it, with the endpoints' bytes
// left out.

const SOURCE_TAG = (8 << 3) | 2;
const DESTINATION_TAG = (9 << 3) | 2;

interface Known {
  readonly bytes: DataView;
  readonly endpoint: Endpoint;
}

/** Endpoints seen, by a hash of their bytes. Bounded, and forgotten whole when full. */
const known = new Map<number, Known>();
const KNOWN_MAX = 8192;

/** The flow's other fields, copied together for Flow.decode; grown as needed, never shrunk. */
let rest = new Uint8Array(4096);
let restReader = new BinaryReader(rest);

/** A view of the buffer flows are read from (the agent reads them all from one). */
let viewOf: Uint8Array | undefined;
let view: DataView = new DataView(new ArrayBuffer(0));

// Bytes are hashed and compared four at a time: a byte at a time, it cost more than the strings' decoding it saves.
function endpointAt(r: BinaryReader, buf: Uint8Array, at: number, len: number): Endpoint {
  if (buf !== viewOf) {
    view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    viewOf = buf;
  }
  const words = len & ~3;
  let h = len;
  for (let i = 0; i < words; i += 4) {
    h = Math.imul(h ^ view.getUint32(at + i, true), 0x85ebca6b);
    h ^= h >>> 13;
  }
  for (let i = words; i < len; i++) h = Math.imul(h ^ buf[at + i]!, 0x01000193);
  const key = h & 0x3fffffff;
  const had = known.get(key);
  if (had !== undefined && had.bytes.byteLength === len) {
    const b = had.bytes;
    let i = 0;
    while (i < words && b.getUint32(i, true) === view.getUint32(at + i, true)) i += 4;
    if (i === words) {
      while (i < len && b.getUint8(i) === buf[at + i]) i++;
      if (i === len) return had.endpoint;
    }
  }
  r.pos = at;
  const e = Endpoint.decode(r, len);
  Object.freeze(e.labels);
  for (const w of e.workloads) Object.freeze(w);
  Object.freeze(e.workloads);
  Object.freeze(e);
  if (known.size >= KNOWN_MAX) known.clear();
  known.set(key, { bytes: new DataView(buf.slice(at, at + len).buffer), endpoint: e });
  return e;
}

/**
 * Decodes the Flow message buf[at, at + len) with the reader `r` (which reads
 * buf, bounded at least to the message's end), leaving r.pos at its end. The
 * same Flow as Flow.decode gives, but for its endpoints: shared, and frozen.
 */
export function decodeFlow(r: BinaryReader, buf: Uint8Array, at: number, len: number): Flow {
  const end = at + len;
  if (rest.length < len) {
    rest = new Uint8Array(Math.max(len, rest.length * 2));
    restReader = new BinaryReader(rest);
  }
  let n = 0;
  let source: Endpoint | undefined;
  let destination: Endpoint | undefined;
  r.pos = at;
  while (r.pos < end) {
    const from = r.pos;
    const tag = r.uint32();
    const wt = tag & 7;
    if (wt === 2) {
      const l = r.uint32();
      const body = r.pos;
      if (body + l > end) throw new RangeError('premature EOF');
      r.pos = body + l;
      // An endpoint sent twice: the last one counts, as in Flow.decode.
      if (tag === SOURCE_TAG) {
        source = endpointAt(r, buf, body, l);
        r.pos = body + l;
        continue;
      }
      if (tag === DESTINATION_TAG) {
        destination = endpointAt(r, buf, body, l);
        r.pos = body + l;
        continue;
      }
    } else if (wt === 0) {
      while (r.pos < end && buf[r.pos++]! & 0x80);
    } else if (wt === 1) r.pos += 8;
    else if (wt === 5) r.pos += 4;
    else {
      // Groups (long obsolete, never in a Hubble flow): Flow.decode reads the whole message.
      r.pos = at;
      return Flow.decode(r, len);
    }
    if (r.pos > end) throw new RangeError('premature EOF');
    for (let i = from; i < r.pos; i++) rest[n++] = buf[i]!;
  }
  if (source === undefined && destination === undefined) {
    r.pos = at;
    return Flow.decode(r, len);
  }
  restReader.pos = 0;
  (restReader as { len: number }).len = n;
  const flow = Flow.decode(restReader, n);
  flow.source = source;
  flow.destination = destination;
  r.pos = end;
  return flow;
}
