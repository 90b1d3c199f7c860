import { createRequire, Module } from 'node:module';
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

// kafkajs (2.2.x) encodes produce requests in JavaScript, and these parts of
// it cost a replica more CPU than anything of ours but the store (profiles in
// docs/kafka.md, "Benchmark"), so they are replaced in place, each writing
// the same bytes as kafkajs's own (kafkajs-tuning.test.ts compares them):
//
// - CRC32C: kafkajs goes one byte per step over every record batch in
//   JavaScript; @node-rs/crc32 computes the same sums with the CPU's CRC32C
//   instruction (crc.bench.ts measures both);
// - the Encoder: kafkajs grows it with Buffer.alloc, zero-filling each new
//   buffer before the copy overwrites it;
// - the record encoder: kafkajs starts a zero-filled 512-byte encoder per
//   message, measures and converts strings several times, grows by doubling
//   and writes varints through temporary arrays and the timestamp delta
//   through 64-bit Long arithmetic; here a record is measured once and
//   written in one pass into a buffer of its exact size;
// - the record batch, produce request and request encoders: kafkajs copies
//   each batch into its partition's encoder, the topic's, the request body
//   and the request, each a fresh buffer of up to 2 MB whose page faults
//   cost more than the copying; here they hand their pieces on (chunked())
//   and the request's frame and pieces go to the socket in one writev
//   (writeRequest()), so a message value is never copied in JavaScript;
// - murmur2 (the partition of a key): kafkajs builds a Buffer per key and a
//   Long per step; here it is 32-bit integer arithmetic;
// - the request queue's pending check: with no request waiting, kafkajs
//   2.2.4 re-arms a timer of 1 ms on every connection for ever
//   (tulios/kafkajs#1556), so an idle replica spent about 30 ms of CPU a
//   second waking up, and a busy one ran those timers between all its work;
//   here the check is scheduled only while a request waits.
//
// The CRC can only be swapped before kafkajs loads its record batch encoder
// (it keeps the function it got), so this module is imported before kafkajs;
// if kafkajs was loaded first (another import path), the CRC stays kafkajs's
// own and only the encoders are tuned. Anything unexpected (another kafkajs
// version's layout) leaves kafkajs as it is; package.json pins the version.

const require = createRequire(import.meta.url);

/**
 * CRC32C (Castagnoli) of `buf`, unsigned, as Kafka's record batches carry it.
 * With a second argument, the CRC of that previous sum's bytes followed by
 * `buf`: a batch's sum is chained over its pieces without joining them.
 */
export const crc32c: (buf: Uint8Array, previous?: number) => number = nativeCrc32c;

const M = 0x5bd1e995;
/** Keys up to this many UTF-8 bytes are hashed from one reused buffer. */
const scratch = Buffer.allocUnsafe(4096);

/** The partition of `key` among `partitions`, as kafkajs's DefaultPartitioner places a keyed message: toPositive(murmur2(key)) % partitions. */
export function keyPartition(key: string, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

/**
 * Kafka's murmur2 of a key's UTF-8 bytes (the Java client's, which kafkajs's
 * default partitioner uses), signed. kafkajs computes it with a 64-bit Long
 * object per step and a Buffer per key, about 4 µs for an 80-byte key;
 * Math.imul is the same 32-bit multiply. kafkajs-tuning.test.ts compares the
 * two.
 */
export function murmur2(key: string): number {
  const data = key.length * 3 <= scratch.length ? scratch : Buffer.from(key);
  const length = data === scratch ? scratch.write(key) : data.length;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  const tail = length & ~3;
  // The last one to three bytes, as Java's switch takes them by falling through.
  const rest = length & 3;
  if (rest === 3) h ^= data[tail + 2]! << 16;
  if (rest >= 2) h ^= data[tail + 1]! << 8;
  if (rest >= 1) h = Math.imul(h ^ data[tail]!, M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

interface EncoderLike {
  buf: Buffer;
  offset: number;
  /** Set by the encoders below: the bytes as pieces, in order, not copied into one buffer yet (`buf` does that on first use). */
  chunks?: Buffer[];
}

/**
 * An encoder whose bytes are `chunks` in order, `size` in all. The record,
 * record batch and produce encoders below hand their pieces on this way, so
 * a message value is copied once, into the request, instead of once per
 * level; anything else that reads `buf` (kafkajs's own encoders, for a
 * compressed batch, say) gets them joined then.
 */
function chunked(proto: object, chunks: Buffer[], size: number): EncoderLike {
  const e = Object.create(proto) as EncoderLike;
  e.chunks = chunks;
  e.offset = size;
  Object.defineProperty(e, 'buf', {
    configurable: true,
    enumerable: true,
    get(this: EncoderLike) {
      const buf = chunks.length === 1 && chunks[0]!.length === size ? chunks[0]! : Buffer.concat(chunks, size);
      Object.defineProperty(this, 'buf', { value: buf, writable: true, configurable: true, enumerable: true });
      return buf;
    },
    set(this: EncoderLike, v: Buffer) {
      Object.defineProperty(this, 'buf', { value: v, writable: true, configurable: true, enumerable: true });
    },
  });
  return e;
}

/** An encoder's bytes as pieces: its chunks, or its buffer up to its offset. */
function piecesOf(e: EncoderLike): Buffer[] {
  return e.chunks ?? [e.buf.subarray(0, e.offset)];
}

/** What was tuned: the tests check that each part took on the pinned kafkajs. */
export const tuned = { crc32c: false, encoder: false, record: false, recordBatch: false, produce: false, request: false, requestQueue: false };

interface RecordInput {
  offsetDelta?: number;
  timestampDelta?: number;
  key?: unknown;
  value?: unknown;
  headers?: Record<string, unknown>;
}
type RecordEncoder = (r: RecordInput) => EncoderLike;

/** Bytes of kafkajs's zig-zag varint of a 32-bit integer. */
function varIntSize(v: number): number {
  let u = ((v << 1) ^ (v >> 31)) >>> 0;
  let n = 1;
  while (u >= 0x80) {
    u >>>= 7;
    n++;
  }
  return n;
}

function writeVarInt(buf: Buffer, at: number, v: number): number {
  let u = ((v << 1) ^ (v >> 31)) >>> 0;
  while (u >= 0x80) {
    buf[at++] = (u & 0x7f) | 0x80;
    u >>>= 7;
  }
  buf[at++] = u;
  return at;
}

const SMALL = 0x3fffffff;

/**
 * kafkajs's Record (v0) in one pass: the same bytes, written into one buffer
 * of the record's exact size. Inputs it was not made for (a timestamp delta
 * beyond 30 bits, a key, value or header that is not a string, Buffer or
 * null) go to kafkajs's own.
 */
export function fastRecord(original: RecordEncoder, proto: object): RecordEncoder {
  return (r) => {
    const offsetDelta = r.offsetDelta ?? 0;
    const ts = r.timestampDelta ?? 0;
    if (typeof ts !== 'number' || !Number.isInteger(ts) || ts > SMALL || ts < -SMALL || offsetDelta > SMALL || offsetDelta < 0) return original(r);
    const key = r.key == null ? null : typeof r.key === 'string' ? Buffer.from(r.key) : Buffer.isBuffer(r.key) ? r.key : undefined;
    const value = r.value == null ? null : typeof r.value === 'string' ? Buffer.from(r.value) : Buffer.isBuffer(r.value) ? r.value : undefined;
    if (key === undefined || value === undefined) return original(r);
    const hs: Buffer[] = [];
    if (r.headers) {
      for (const k of Object.keys(r.headers)) {
        const hv = r.headers[k];
        for (const v of Array.isArray(hv) ? hv : [hv]) {
          if (typeof v !== 'string' && !Buffer.isBuffer(v)) return original(r);
          hs.push(Buffer.from(k), typeof v === 'string' ? Buffer.from(v) : v);
        }
      }
    }
    let body = 1 + varIntSize(ts) + varIntSize(offsetDelta);
    body += key ? varIntSize(key.length) + key.length : 1;
    body += value ? varIntSize(value.length) + value.length : 1;
    let tail = varIntSize(hs.length / 2);
    for (const h of hs) tail += varIntSize(h.length) + h.length;
    body += tail;
    const total = varIntSize(body) + body;
    // The value is referenced, not copied: it is copied once, into the request.
    const separate = value !== null && value.length >= SEPARATE_VALUE_BYTES;
    const buf = Buffer.allocUnsafe(separate ? total - value.length - tail : total);
    let at = writeVarInt(buf, 0, body);
    buf[at++] = 0;
    at = writeVarInt(buf, at, ts);
    at = writeVarInt(buf, at, offsetDelta);
    if (!key) {
      at = writeVarInt(buf, at, -1);
    } else {
      at = writeVarInt(buf, at, key.length);
      at += key.copy(buf, at);
    }
    if (!value) {
      at = writeVarInt(buf, at, -1);
    } else {
      at = writeVarInt(buf, at, value.length);
      if (!separate) at += value.copy(buf, at);
    }
    const rest = separate ? Buffer.allocUnsafe(tail) : buf;
    let t = separate ? 0 : at;
    t = writeVarInt(rest, t, hs.length / 2);
    for (const h of hs) {
      t = writeVarInt(rest, t, h.length);
      t += h.copy(rest, t);
    }
    return separate ? chunked(proto, [buf, value, rest], total) : chunked(proto, [buf], total);
  };
}

/** Values from this size on are handed on by reference (smaller ones are copied: a piece costs more than copying them). */
const SEPARATE_VALUE_BYTES = 256;

interface LongLike {
  getHighBits(): number;
  getLowBits(): number;
}
interface BatchInput {
  compression?: number;
  firstOffset?: unknown;
  firstTimestamp?: number;
  maxTimestamp?: number;
  partitionLeaderEpoch?: number;
  lastOffsetDelta?: number;
  transactional?: boolean;
  producerId?: unknown;
  producerEpoch?: number;
  firstSequence?: number;
  records?: EncoderLike[];
}
type BatchEncoder = (b: BatchInput) => Promise<EncoderLike>;

/**
 * kafkajs's RecordBatch (v0) for uncompressed batches, in one buffer of its
 * exact size: the same bytes (firstOffset, the batch's length, then the batch
 * with its CRC32C). Compressed batches go to kafkajs's own.
 */
export function fastRecordBatch(original: BatchEncoder, proto: object, fromValue: (v: unknown) => LongLike, crc: (b: Uint8Array) => number): BatchEncoder {
  return async (b) => {
    const records = b.records ?? [];
    if ((b.compression ?? 0) !== 0 || !records.every((r) => r && (r.chunks !== undefined || Buffer.isBuffer(r.buf)) && typeof r.offset === 'number')) {
      return original(b);
    }
    const now = Date.now();
    let size = 0;
    for (const r of records) size += r.offset;
    // firstOffset(8) length(4) epoch(4) magic(1) crc(4) attributes(2) lastOffsetDelta(4) timestamps(16) producerId(8) epoch(2) sequence(4) count(4)
    const total = 61 + size;
    // Our CRC runs over the pieces; another one (kafkajs's own) needs the batch in one buffer.
    const pieces = crc === crc32c;
    const buf = Buffer.allocUnsafe(pieces ? 61 : total);
    const int64 = (v: unknown, at: number) => {
      const l = fromValue(v);
      buf.writeInt32BE(l.getHighBits(), at);
      buf.writeInt32BE(l.getLowBits(), at + 4);
    };
    int64(b.firstOffset ?? 0, 0);
    buf.writeInt32BE(total - 12, 8);
    buf.writeInt32BE(b.partitionLeaderEpoch ?? 0, 12);
    buf.writeInt8(2, 16);
    buf.writeInt16BE(b.transactional ? 16 : 0, 21);
    buf.writeInt32BE(b.lastOffsetDelta ?? 0, 23);
    int64(b.firstTimestamp ?? now, 27);
    int64(b.maxTimestamp ?? now, 35);
    int64(b.producerId ?? -1, 43);
    buf.writeInt16BE(b.producerEpoch ?? 0, 51);
    buf.writeInt32BE(b.firstSequence ?? 0, 53);
    buf.writeInt32BE(records.length, 57);
    if (!pieces) {
      let at = 61;
      for (const r of records) at += r.buf.copy(buf, at, 0, r.offset);
      buf.writeUInt32BE(crc(buf.subarray(21)), 17);
      return chunked(proto, [buf], total);
    }
    const chunks: Buffer[] = [buf];
    for (const r of records) for (const c of piecesOf(r)) chunks.push(c);
    // The CRC covers the batch from its attributes on: the header's tail, then every piece.
    let sum = crc32c(buf.subarray(21, 61));
    for (let i = 1; i < chunks.length; i++) sum = crc32c(chunks[i]!, sum);
    buf.writeUInt32BE(sum, 17);
    return chunked(proto, chunks, total);
  };
}

/** Whether `e` is an encoder (kafkajs's or chunked()): a numeric offset, and a Buffer or pieces. */
function isEncoder(e: unknown): e is EncoderLike {
  if (typeof e !== 'object' || e === null || typeof (e as EncoderLike).offset !== 'number') return false;
  return Array.isArray((e as EncoderLike).chunks) || Buffer.isBuffer((e as EncoderLike).buf);
}

function encoderOf(proto: object, buf: Buffer): EncoderLike {
  const e = Object.create(proto) as EncoderLike;
  e.buf = buf;
  e.offset = buf.length;
  return e;
}

/** Bytes of a Kafka (nullable) STRING: an INT16 length, -1 for null, then UTF-8. */
function stringSize(s: string | null | undefined): number {
  return 2 + (s == null ? 0 : Buffer.byteLength(s));
}

function writeString(buf: Buffer, at: number, s: string | null | undefined): number {
  if (s == null) {
    buf.writeInt16BE(-1, at);
    return at + 2;
  }
  const n = buf.write(s, at + 2, 'utf8');
  buf.writeInt16BE(n, at);
  return at + 2 + n;
}

/** The pieces that follow a request's frame (fastRequest), by the frame's buffer, for writeRequest. */
const requestRest = new WeakMap<Buffer, Buffer[]>();

interface WritableSocket {
  write(data: unknown, encoding?: unknown, cb?: unknown): boolean;
  cork(): void;
  uncork(): void;
}

/**
 * A kafkajs connection's socket.write: a request frame from fastRequest goes
 * out with its pieces in one writev (cork, write each, uncork), anything
 * else as it is.
 */
export function writeRequest(write: WritableSocket['write']): WritableSocket['write'] {
  return function (this: WritableSocket, data, encoding, cb) {
    const rest = Buffer.isBuffer(data) ? requestRest.get(data) : undefined;
    if (!rest) return write.call(this, data, encoding, cb);
    this.cork();
    write.call(this, data);
    let ok = true;
    for (let i = 0; i < rest.length; i++) ok = write.call(this, rest[i], undefined, i === rest.length - 1 ? cb : undefined);
    this.uncork();
    return ok;
  };
}

interface RequestInput {
  correlationId: number;
  clientId?: string | null;
  request: { apiKey: number; apiVersion: number; encode: () => Promise<unknown> };
}
type RequestEncoder = (r: RequestInput) => Promise<EncoderLike>;

/**
 * kafkajs's protocol/request.js (every request's frame: size, api key and
 * version, correlation id, client id, then the body) in one buffer of its
 * exact size instead of two growing copies. A body that is not an encoder
 * goes to kafkajs's own, which rejects it as before.
 */
export function fastRequest(original: RequestEncoder, proto: object, pieces = false): RequestEncoder {
  return async (r) => {
    const { apiKey, apiVersion, encode } = r.request;
    const body = await encode();
    if (!isEncoder(body)) return original({ ...r, request: { ...r.request, encode: async () => body } });
    const head = 4 + 2 + 2 + 4 + stringSize(r.clientId);
    const rest = piecesOf(body);
    // With the socket's writeRequest: the frame alone, its pieces to follow it (small bodies are copied: a piece costs more).
    const separate = pieces && body.offset >= SEPARATE_BODY_BYTES;
    const buf = Buffer.allocUnsafe(separate ? head : head + body.offset);
    buf.writeInt32BE(head + body.offset - 4, 0);
    buf.writeInt16BE(apiKey, 4);
    buf.writeInt16BE(apiVersion, 6);
    buf.writeInt32BE(r.correlationId, 8);
    writeString(buf, 12, r.clientId);
    if (!separate) {
      let at = head;
      for (const c of rest) at += c.copy(buf, at);
      return encoderOf(proto, buf);
    }
    requestRest.set(buf, rest);
    const e = encoderOf(proto, buf);
    // kafkajs writes `buffer` to the socket: this very frame, which writeRequest knows. size() is the whole request's.
    Object.defineProperty(e, 'buffer', { value: buf });
    e.offset = head + body.offset;
    return e;
  };
}

/** Bodies from this size on go to the socket as pieces rather than copied behind their frame. */
const SEPARATE_BODY_BYTES = 16 * 1024;

interface ProduceMessage {
  timestamp?: number | null;
  [k: string]: unknown;
}
interface ProduceInput {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: { topic: string; partitions: { partition: number; firstSequence?: number; messages: ProduceMessage[] }[] }[];
}
type ProduceRequest = (p: ProduceInput) => { apiKey: number; apiVersion: number; encode: () => Promise<EncoderLike> } & Record<string, unknown>;
type RecordFn = (r: Record<string, unknown>) => EncoderLike;
type RecordBatchFn = (b: Record<string, unknown>) => Promise<EncoderLike>;

/**
 * kafkajs's Produce request v3 (which v4 to v7 reuse): the same record
 * batches, built by the same encoders, with the same timestamps, then the
 * body (transactional id, acks, timeout, topics, partitions, batches) written
 * into one buffer of its exact size rather than copied through an encoder
 * per partition, per topic and for the body.
 */
export function fastProduce(original: ProduceRequest, record: RecordFn, recordBatch: RecordBatchFn, proto: object, minusOne: unknown): ProduceRequest {
  return (input) => {
    const req = original(input);
    const { acks, timeout, transactionalId = null, producerId = minusOne, producerEpoch = 0, compression = 0, topicData } = input;
    const encode = async (): Promise<EncoderLike> => {
      let size = stringSize(transactionalId) + 2 + 4 + 4;
      const topics: { topic: string; parts: { partition: number; batch: EncoderLike }[] }[] = [];
      for (const { topic, partitions } of topicData) {
        size += stringSize(topic) + 4;
        const parts: { partition: number; batch: EncoderLike }[] = [];
        for (const { partition, messages, firstSequence } of partitions) {
          // As kafkajs's partition encoder does, to the sort (a string sort, as there).
          const dateNow = Date.now();
          const messageTimestamps = messages
            .map((m) => m.timestamp)
            .filter((t) => t != null)
            .sort();
          const timestamps = messageTimestamps.length === 0 ? [dateNow] : messageTimestamps;
          const firstTimestamp = timestamps[0] as number;
          const maxTimestamp = timestamps[timestamps.length - 1];
          const records = messages.map((message, i) => record({ ...message, offsetDelta: i, timestampDelta: (message.timestamp || dateNow) - firstTimestamp }));
          const batch = await recordBatch({
            compression,
            records,
            firstTimestamp,
            maxTimestamp,
            producerId,
            producerEpoch,
            firstSequence,
            transactional: !!transactionalId,
            lastOffsetDelta: records.length - 1,
          });
          if (!isEncoder(batch)) throw new Error('kafkajs record batch is not an encoder');
          parts.push({ partition, batch });
          size += 4 + 4 + batch.offset;
        }
        topics.push({ topic, parts });
      }
      // The framing in one small buffer; the batches are pieces between its parts, not copied here.
      let frame = size;
      for (const { parts } of topics) for (const { batch } of parts) frame -= batch.offset;
      const buf = Buffer.allocUnsafe(frame);
      const chunks: Buffer[] = [];
      let from = 0;
      let at = writeString(buf, 0, transactionalId);
      buf.writeInt16BE(acks, at);
      buf.writeInt32BE(timeout, at + 2);
      buf.writeInt32BE(topics.length, at + 6);
      at += 10;
      for (const { topic, parts } of topics) {
        at = writeString(buf, at, topic);
        buf.writeInt32BE(parts.length, at);
        at += 4;
        for (const { partition, batch } of parts) {
          buf.writeInt32BE(partition, at);
          buf.writeInt32BE(batch.offset, at + 4);
          at += 8;
          chunks.push(buf.subarray(from, at));
          from = at;
          for (const c of piecesOf(batch)) chunks.push(c);
        }
      }
      if (at > from) chunks.push(buf.subarray(from, at));
      return chunked(proto, chunks, size);
    };
    return { ...req, encode };
  };
}

function tune(): void {
  try {
    const crcPath = require.resolve('kafkajs/src/protocol/recordBatch/crc32C/index.js');
    const batchPath = require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js');
    if (!require.cache[batchPath] && !require.cache[crcPath]) {
      const m = new Module(crcPath);
      m.filename = crcPath;
      m.loaded = true;
      m.exports = crc32c;
      require.cache[crcPath] = m;
      tuned.crc32c = true;
    } else {
      tuned.crc32c = require.cache[crcPath]?.exports === crc32c;
    }
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { nextPowerOfTwo?: (n: number) => number; prototype: { ensureAvailable?: unknown } };
    // The record encoder is taken by the produce request when it loads; swapped before that only.
    const recordPath = require.resolve('kafkajs/src/protocol/recordBatch/record/v0/index.js');
    const producePath = require.resolve('kafkajs/src/protocol/requests/produce/v3/request.js');
    if (!require.cache[producePath]) {
      const original = require(recordPath) as RecordEncoder;
      const cached = require.cache[recordPath];
      if (typeof original === 'function' && cached && typeof (Encoder.prototype as { writeVarIntBytes?: unknown }).writeVarIntBytes === 'function') {
        cached.exports = fastRecord(original, Encoder.prototype);
        tuned.record = true;
      }
      const batchMod = require(batchPath) as { RecordBatch?: BatchEncoder };
      const Long = require('kafkajs/src/utils/long.js') as { fromValue?: (v: unknown) => LongLike };
      const batchCrc = require(crcPath) as (b: Uint8Array) => number;
      if (typeof batchMod.RecordBatch === 'function' && typeof Long.fromValue === 'function') {
        batchMod.RecordBatch = fastRecordBatch(batchMod.RecordBatch, Encoder.prototype, Long.fromValue.bind(Long), batchCrc);
        tuned.recordBatch = true;
      }
      // v4 to v7 take v3's module when they load, which is after this.
      const v3 = require(producePath) as ProduceRequest;
      // Loaded just now (it was not before this block): not narrowed to undefined.
      const loaded: NodeJS.Dict<NodeJS.Module> = require.cache;
      const v3Cached = loaded[producePath];
      const fromInt = (Long as { fromInt?: (n: number) => unknown }).fromInt;
      if (typeof v3 === 'function' && v3Cached && typeof fromInt === 'function' && typeof batchMod.RecordBatch === 'function') {
        const record = require(recordPath) as RecordFn;
        v3Cached.exports = fastProduce(v3, record, batchMod.RecordBatch as unknown as RecordBatchFn, Encoder.prototype, fromInt.call(Long, -1));
        tuned.produce = true;
      }
    }
    // Every request's frame, and the socket it is written to; connection.js takes both when it loads.
    const requestPath = require.resolve('kafkajs/src/protocol/request.js');
    const socketPath = require.resolve('kafkajs/src/network/socket.js');
    if (!require.cache[require.resolve('kafkajs/src/network/connection.js')]) {
      const original = require(requestPath) as RequestEncoder;
      const cached = require.cache[requestPath];
      const createSocket = require(socketPath) as (o: unknown) => WritableSocket;
      const socketCached = require.cache[socketPath];
      if (typeof original === 'function' && cached && typeof createSocket === 'function' && socketCached) {
        socketCached.exports = (o: unknown) => {
          const socket = createSocket(o);
          socket.write = writeRequest(socket.write);
          return socket;
        };
        cached.exports = fastRequest(original, Encoder.prototype, true);
        tuned.request = true;
      }
    }
    // Waiting requests are sent when a throttle ends (this timer) or when an in-flight one completes (kafkajs's own
    // call); with none waiting the timer only re-arms itself, each millisecond.
    const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as { prototype: { scheduleCheckPendingRequests?: unknown } };
    const schedule = RequestQueue.prototype.scheduleCheckPendingRequests;
    if (typeof schedule === 'function') {
      RequestQueue.prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests(this: { pending?: unknown[] }) {
        if (Array.isArray(this.pending) && this.pending.length === 0) return;
        (schedule as () => void).call(this);
      };
      tuned.requestQueue = true;
    }
    const next = Encoder.nextPowerOfTwo;
    if (typeof next === 'function' && typeof Encoder.prototype.ensureAvailable === 'function') {
      // Only bytes below `offset` are ever read (Encoder#buffer slices there), so the new buffer need not be zeroed.
      Encoder.prototype.ensureAvailable = function ensureAvailable(this: EncoderLike, length: number) {
        if (this.offset + length > this.buf.length) {
          const grown = Buffer.allocUnsafe(next(this.offset + length));
          this.buf.copy(grown, 0, 0, this.offset);
          this.buf = grown;
        }
      };
      tuned.encoder = true;
    }
  } catch {
    // Another kafkajs layout: it runs as it is.
  }
}

tune();
