import { BinaryReader } from '@bufbuild/protobuf/wire';
import { CiliumEventType, Endpoint, Flow, IP } from '../../gen/flow/flow.js';
import { Timestamp } from '../../gen/google/protobuf/timestamp.js';
import { podNamespace } from './endpoint-name.js';

// A flow's source and destination (fields 8 and 9) are most of its bytes, most
// of its decoding (a dozen label strings each) and most of what the garbage
// collector then sweeps up; yet a cluster's flows come from a few thousand
// endpoints, each sent as the same bytes again and again. So an endpoint is
// decoded once and shared by every flow that carries the same bytes: a flow
// costs a hash and a comparison of those bytes instead. The same goes for the
// addresses (IP), the node's name and the event type, which repeat as much:
// what is left to decode per flow is its time, uuid, ports and numbers (its
// time read here: Timestamp.decode makes a string of the seconds). Shared
// values are frozen (a flow's reader must not change what other flows hold);
// the rest of the flow is decoded as Flow.decode does it, with the bytes of
// the fields read here left out.

const TIME_TAG = (1 << 3) | 2;
const IP_TAG = (5 << 3) | 2;
const SOURCE_TAG = (8 << 3) | 2;
const DESTINATION_TAG = (9 << 3) | 2;
const NODE_NAME_TAG = (11 << 3) | 2;
const EVENT_TYPE_TAG = (19 << 3) | 2;

interface Known<T> {
  readonly bytes: DataView;
  readonly value: T;
}

/** Values seen, by a hash of their bytes; one cache per field. Bounded, and forgotten whole when full. */
type Cache<T> = Map<number, Known<T>>;
const KNOWN_MAX = 8192;
const endpoints: Cache<Endpoint> = new Map();
const ips: Cache<IP> = new Map();
const nodeNames: Cache<string> = new Map();
const eventTypes: Cache<CiliumEventType> = new Map();

/** The flow's other fields, copied together for Flow.decode; grown as needed, never shrunk. */
let rest = new Uint8Array(4096);
let restReader = new BinaryReader(rest);

/** A view of the buffer flows are read from (the agent reads them all from one). */
let viewOf: Uint8Array | undefined;
let view: DataView = new DataView(new ArrayBuffer(0));

/** Where the hash of buf[at, at + len) found its value in `cache`, or undefined; kept for remember(). */
let lastKey = 0;

// Bytes are hashed and compared four at a time: a byte at a time, it cost more than the strings' decoding it saves.
function lookup<T>(cache: Cache<T>, buf: Uint8Array, at: number, len: number): T | undefined {
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
  lastKey = h & 0x3fffffff;
  const had = cache.get(lastKey);
  if (had === undefined || had.bytes.byteLength !== len) return undefined;
  const b = had.bytes;
  let i = 0;
  while (i < words && b.getUint32(i, true) === view.getUint32(at + i, true)) i += 4;
  if (i < words) return undefined;
  while (i < len && b.getUint8(i) === buf[at + i]) i++;
  return i === len ? had.value : undefined;
}

/** Stores what lookup() did not find, under the key it computed. */
function remember<T>(cache: Cache<T>, buf: Uint8Array, at: number, len: number, value: T): T {
  if (cache.size >= KNOWN_MAX) cache.clear();
  cache.set(lastKey, { bytes: new DataView(buf.slice(at, at + len).buffer), value });
  return value;
}

function endpointAt(r: BinaryReader, buf: Uint8Array, at: number, len: number): Endpoint {
  const had = lookup(endpoints, buf, at, len);
  if (had !== undefined) return had;
  r.pos = at;
  const e = Endpoint.decode(r, len);
  e.namespace = podNamespace(e.namespace, e.labels);
  Object.freeze(e.labels);
  for (const w of e.workloads) Object.freeze(w);
  Object.freeze(e.workloads);
  return remember(endpoints, buf, at, len, Object.freeze(e));
}

function ipAt(r: BinaryReader, buf: Uint8Array, at: number, len: number): IP {
  const had = lookup(ips, buf, at, len);
  if (had !== undefined) return had;
  r.pos = at;
  return remember(ips, buf, at, len, Object.freeze(IP.decode(r, len)));
}

function eventTypeAt(r: BinaryReader, buf: Uint8Array, at: number, len: number): CiliumEventType {
  const had = lookup(eventTypes, buf, at, len);
  if (had !== undefined) return had;
  r.pos = at;
  return remember(eventTypes, buf, at, len, Object.freeze(CiliumEventType.decode(r, len)));
}

/**
 * The string whose length prefix is at `lenAt` and bytes at buf[at, at + len): read by `r` as Flow.decode reads it.
 * Also the node name of Relay's response around the flow, which names the same few nodes: one cache for both.
 */
export function nodeNameAt(r: BinaryReader, buf: Uint8Array, lenAt: number, at: number, len: number): string {
  const had = lookup(nodeNames, buf, at, len);
  if (had !== undefined) return had;
  r.pos = lenAt;
  return remember(nodeNames, buf, at, len, r.string());
}

/**
 * The Timestamp buf[at, at + len), as Timestamp.decode reads it. Seconds of up
 * to 7 varint bytes (49 bits, exact as a number) are read here; anything else
 * (negative seconds, a field Timestamp does not have) by Timestamp.decode.
 */
function timeAt(r: BinaryReader, buf: Uint8Array, at: number, len: number): Timestamp {
  const end = at + len;
  const t: Timestamp = { seconds: 0, nanos: 0 };
  let p = at;
  while (p < end) {
    const tag = buf[p++];
    if (tag === 0x08) {
      let v = 0;
      let scale = 1;
      let b: number;
      let i = 0;
      do {
        if (i++ === 7 || p >= end) return slowTime(r, at, len);
        b = buf[p++]!;
        v += (b & 0x7f) * scale;
        scale *= 128;
      } while (b & 0x80);
      t.seconds = v;
    } else if (tag === 0x10) {
      r.pos = p;
      t.nanos = r.int32();
      p = r.pos;
    } else return slowTime(r, at, len);
  }
  return p === end ? t : slowTime(r, at, len);
}

function slowTime(r: BinaryReader, at: number, len: number): Timestamp {
  r.pos = at;
  return Timestamp.decode(r, len);
}

/** A flow decoded whole by Flow.decode, its endpoints' namespaces filled in as endpointAt() does. */
function withPodNamespaces(flow: Flow): Flow {
  for (const e of [flow.source, flow.destination]) if (e) e.namespace = podNamespace(e.namespace, e.labels);
  return flow;
}

/**
 * Decodes the Flow message buf[at, at + len) with the reader `r` (which reads
 * buf, bounded at least to the message's end), leaving r.pos at its end. The
 * same Flow as Flow.decode gives, but for its endpoints, addresses and event
 * type: shared, and frozen; and an endpoint's empty namespace is filled from
 * its namespace label (podNamespace).
 */
export function decodeFlow(r: BinaryReader, buf: Uint8Array, at: number, len: number): Flow {
  const end = at + len;
  if (rest.length < len) {
    rest = new Uint8Array(Math.max(len, rest.length * 2));
    restReader = new BinaryReader(rest);
  }
  let n = 0;
  let taken = false;
  let time: Timestamp | undefined;
  let source: Endpoint | undefined;
  let destination: Endpoint | undefined;
  let ip: IP | undefined;
  let eventType: CiliumEventType | undefined;
  let nodeName: string | undefined;
  r.pos = at;
  while (r.pos < end) {
    const from = r.pos;
    const tag = r.uint32();
    const wt = tag & 7;
    if (wt === 2) {
      const lenAt = r.pos;
      const l = r.uint32();
      const body = r.pos;
      if (body + l > end) throw new RangeError('premature EOF');
      // A field sent twice: the last one counts, as in Flow.decode.
      switch (tag) {
        case TIME_TAG:
          time = timeAt(r, buf, body, l);
          break;
        case SOURCE_TAG:
          source = endpointAt(r, buf, body, l);
          break;
        case DESTINATION_TAG:
          destination = endpointAt(r, buf, body, l);
          break;
        case IP_TAG:
          ip = ipAt(r, buf, body, l);
          break;
        case EVENT_TYPE_TAG:
          eventType = eventTypeAt(r, buf, body, l);
          break;
        case NODE_NAME_TAG:
          nodeName = nodeNameAt(r, buf, lenAt, body, l);
          break;
        default:
          r.pos = body + l;
          for (let i = from; i < r.pos; i++) rest[n++] = buf[i]!;
          continue;
      }
      taken = true;
      r.pos = body + l;
      continue;
    }
    if (wt === 0) {
      while (r.pos < end && buf[r.pos++]! & 0x80);
    } else if (wt === 1) r.pos += 8;
    else if (wt === 5) r.pos += 4;
    else {
      // Groups (long obsolete, never in a Hubble flow): Flow.decode reads the whole message.
      r.pos = at;
      return withPodNamespaces(Flow.decode(r, len));
    }
    if (r.pos > end) throw new RangeError('premature EOF');
    for (let i = from; i < r.pos; i++) rest[n++] = buf[i]!;
  }
  if (!taken) {
    r.pos = at;
    return withPodNamespaces(Flow.decode(r, len));
  }
  restReader.pos = 0;
  (restReader as { len: number }).len = n;
  const flow = Flow.decode(restReader, n);
  if (time !== undefined) flow.time = time;
  if (source !== undefined) flow.source = source;
  if (destination !== undefined) flow.destination = destination;
  if (ip !== undefined) flow.IP = ip;
  if (eventType !== undefined) flow.event_type = eventType;
  if (nodeName !== undefined) flow.node_name = nodeName;
  r.pos = end;
  return flow;
}
