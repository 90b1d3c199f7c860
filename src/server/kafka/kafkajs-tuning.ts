import { createRequire, Module } from 'node:module';

// kafkajs (2.2.x) encodes produce requests in JavaScript, and two of its
// helpers cost a replica more CPU than anything of ours but the store
// (profiles in docs/kafka.md, "Benchmark"):
//
// - its CRC32C goes one byte per step over every record batch; the same
//   table method eight bytes per step (slicing-by-8) gives the same sums at
//   a fraction of the cost;
// - its Encoder grows with Buffer.alloc, which zero-fills each new buffer
//   before the copy overwrites it, at every doubling of every request.
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
export const tuned = { crc32c: false, encoder: false };

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
