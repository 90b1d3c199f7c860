import { createRequire, Module } from 'node:module';

// kafkajs (2.2.x) encodes produce requests in JavaScript, and two of its
// helpers cost a replica more CPU than anything of ours but the store
// (profiles in docs/kafka.md, "Benchmark"):
//
// - its CRC32C goes one byte per step over every record batch; the same
//   table method eight bytes per step (slicing-by-8) gives the same sums at
//   a fraction of the cost;
// - its Encoder grows with Buffer.alloc, which zero-fills each new buffer
//   before the copy overwrites it, at every doubling of every request;
// - its record encoder (one per message of a produce request) starts a
//   zero-filled 512-byte encoder, measures and converts strings several
//   times, grows the encoder by doubling (a 2 KB export value copies three
//   times), and writes each varint through a temporary array and Buffer, the
//   timestamp delta through 64-bit Long arithmetic. The replacement measures
//   once, allocates the record's exact size and writes it in one pass; the
//   bytes are the same (kafkajs-tuning.test.ts compares them);
// - its record batch encoder copies the records three times more (into the
//   batch body, the batch, the length-prefixed batch), each growing by
//   doubling; the replacement (uncompressed batches only) writes the batch
//   into one buffer of its exact size.
//
// Both are replaced in place, without changing what goes on the wire. The
// CRC can only be swapped before kafkajs loads its record batch encoder (it
// keeps the function it got), so this module is imported before kafkajs;
// if kafkajs was loaded first (another import path), the CRC stays kafkajs's
// own and only the encoder is tuned. Anything unexpected (another kafkajs
// version's layout) leaves kafkajs as it is.

const require = createRequire(import.meta.url);

const POLY = 0x82f63b78;
const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/** CRC32C (Castagnoli) of `buf`, unsigned, as Kafka's record batches carry it. */
export function crc32c(buf: Uint8Array): number {
  let crc = -1;
  let i = 0;
  const n = buf.length;
  for (; i + 8 <= n; i += 8) {
    const a = crc ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    crc =
      T[1792 + (a & 0xff)]! ^
      T[1536 + ((a >>> 8) & 0xff)]! ^
      T[1280 + ((a >>> 16) & 0xff)]! ^
      T[1024 + (a >>> 24)]! ^
      T[768 + buf[i + 4]!]! ^
      T[512 + buf[i + 5]!]! ^
      T[256 + buf[i + 6]!]! ^
      T[buf[i + 7]!]!;
  }
  for (; i < n; i++) crc = T[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ -1) >>> 0;
}

interface EncoderLike {
  buf: Buffer;
  offset: number;
}

/** What was tuned, for the tests and the debug log. */
export const tuned = { crc32c: false, encoder: false, record: false, recordBatch: false };

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
    body += varIntSize(hs.length / 2);
    for (const h of hs) body += varIntSize(h.length) + h.length;
    const total = varIntSize(body) + body;
    const buf = Buffer.allocUnsafe(total);
    let at = writeVarInt(buf, 0, body);
    buf[at++] = 0;
    at = writeVarInt(buf, at, ts);
    at = writeVarInt(buf, at, offsetDelta);
    for (const b of [key, value]) {
      if (!b) {
        at = writeVarInt(buf, at, -1);
      } else {
        at = writeVarInt(buf, at, b.length);
        at += b.copy(buf, at);
      }
    }
    at = writeVarInt(buf, at, hs.length / 2);
    for (const h of hs) {
      at = writeVarInt(buf, at, h.length);
      at += h.copy(buf, at);
    }
    const e = Object.create(proto) as EncoderLike;
    e.buf = buf;
    e.offset = at;
    return e;
  };
}

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
    if ((b.compression ?? 0) !== 0 || !records.every((r) => r && Buffer.isBuffer(r.buf) && typeof r.offset === 'number')) return original(b);
    const now = Date.now();
    let size = 0;
    for (const r of records) size += r.offset;
    // firstOffset(8) length(4) epoch(4) magic(1) crc(4) attributes(2) lastOffsetDelta(4) timestamps(16) producerId(8) epoch(2) sequence(4) count(4)
    const total = 61 + size;
    const buf = Buffer.allocUnsafe(total);
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
    let at = 61;
    for (const r of records) at += r.buf.copy(buf, at, 0, r.offset);
    buf.writeUInt32BE(crc(buf.subarray(21)), 17);
    const e = Object.create(proto) as EncoderLike;
    e.buf = buf;
    e.offset = total;
    return e;
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
