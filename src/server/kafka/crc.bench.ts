import { createRequire } from 'node:module';
import { crc32c } from './kafkajs-tuning.js';

// CPU for the CRC32C of produce requests' record batches, as the record batch
// encoder (kafkajs-tuning.ts) computes it: chained over a batch's pieces
// (its header's tail, then each record's head, value and tail).
//   native    crc32c (@node-rs/crc32, the CPU's CRC32C instruction), what runs
//   JS x8     baseline: the fastest table method in JavaScript, eight bytes
//             per step (slicing-by-8), chained over the same pieces
//   kafkajs   kafkajs's own, one byte per step, over the batch in one buffer
// Batches are of agent events (~1.5 KB of JSON each), up to the producer's
// 900 KB per partition. "ns/KB" and "µs/event" (per 1.5 KB of batch) are this
// process's CPU time (user + system), the median of the rounds, in which the
// three alternate.

const require = createRequire(import.meta.url);
const kafkajs = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;
type RecordFn = (r: { key: string; value: Buffer; offsetDelta: number; headers: Record<string, string> }) => { chunks?: Buffer[] };
const record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as RecordFn;

const EVENT_BYTES = 1536;
const ROUNDS = 7;
const ROUND_MS = 150;

const T = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = T[n]!;
  for (let k = 1; k < 8; k++) {
    c = T[c & 0xff]! ^ (c >>> 8);
    T[k * 256 + n] = c;
  }
}

/** The baseline's state after `buf`, from `crc` (-1 to start); the sum is (state ^ -1) >>> 0. */
function jsUpdate(crc: number, buf: Uint8Array): number {
  const n = buf.length;
  const end = n & ~7;
  crc = jsBlocks(crc, buf, end);
  for (let i = end; i < n; i++) crc = T[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return crc;
}

// Apart from the byte loop, so that the code V8 compiles for this loop on the stack does not give up at the byte loop.
function jsBlocks(crc: number, buf: Uint8Array, end: number): number {
  for (let i = 0; i < end; i += 8) {
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
  return crc;
}

/** `n` bytes of event-like JSON. */
function json(n: number, seed: number): Buffer {
  let s = '';
  for (let i = 0; s.length < n; i++)
    s += `{"id":"0190c3a2-${(seed * 7919 + i).toString(16).padStart(8, '0')}","kind":"flow","verdict":"DROPPED","src":"10.0.${i % 256}.${seed % 256}",`;
  return Buffer.from(s.slice(0, n));
}

interface Batch {
  name: string;
  pieces: Buffer[];
  whole: Buffer;
}

/** A batch's CRC pieces: a 40-byte header tail, then the pieces of `records` records of `values` bytes each (as the tuned record encoder hands them on). */
function batch(name: string, records: number, values: number): Batch {
  const pieces = [json(40, 0)];
  for (let i = 0; i < records; i++) {
    const e = record({ key: `prod/agent-${i % 7}`, value: json(values, i), offsetDelta: i, headers: { 'verdict-type': 'events' } });
    if (!e.chunks) throw new Error('the record encoder is not the tuned one');
    pieces.push(...e.chunks);
  }
  return { name, pieces, whole: Buffer.concat(pieces) };
}

const ways: Record<string, (b: Batch) => number> = {
  native: (b) => {
    let sum = crc32c(b.pieces[0]!);
    for (let i = 1; i < b.pieces.length; i++) sum = crc32c(b.pieces[i]!, sum);
    return sum;
  },
  'JS x8': (b) => {
    let state = -1;
    for (const p of b.pieces) state = jsUpdate(state, p);
    return (state ^ -1) >>> 0;
  },
  kafkajs: (b) => kafkajs(b.whole) >>> 0,
};

/** CPU ns per byte of `b` for `way`, over about ROUND_MS. */
function round(way: (b: Batch) => number, b: Batch): number {
  const t0 = process.cpuUsage();
  const w0 = performance.now();
  let n = 0;
  while (performance.now() - w0 < ROUND_MS) {
    way(b);
    n++;
  }
  const t = process.cpuUsage(t0);
  return ((t.user + t.system) * 1000) / (n * b.whole.length);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

export default async function run(): Promise<void> {
  const batches = [
    batch('1 event, 1 record', 1, EVENT_BYTES),
    batch('600 events, 1 record (900 KB)', 1, 600 * EVENT_BYTES),
    batch('40 events, 1 record each', 40, EVENT_BYTES),
    batch('600 events, 1 record each (900 KB)', 600, EVENT_BYTES),
  ];
  for (const b of batches) {
    const want = kafkajs(b.whole) >>> 0;
    for (const [name, way] of Object.entries(ways)) if (way(b) !== want) throw new Error(`${name}: wrong CRC32C for ${b.name}`);
  }
  console.log(
    `${'batch'.padEnd(36)} ${'bytes'.padStart(8)} ${'pieces'.padStart(6)}  ${'way'.padEnd(8)} ${'ns/KB'.padStart(8)} ${'µs/event'.padStart(9)} ${'x native'.padStart(9)}`,
  );
  for (const b of batches) {
    const ns: Record<string, number[]> = {};
    for (let r = 0; r < ROUNDS; r++) for (const [name, way] of Object.entries(ways)) (ns[name] ??= []).push(round(way, b));
    const native = median(ns.native!);
    for (const [name, xs] of Object.entries(ns)) {
      const m = median(xs);
      console.log(
        `${b.name.padEnd(36)} ${String(b.whole.length).padStart(8)} ${String(b.pieces.length).padStart(6)}  ${name.padEnd(8)} ${(m * 1024).toFixed(1).padStart(8)} ${((m * EVENT_BYTES) / 1000).toFixed(3).padStart(9)} ${(m / native).toFixed(1).padStart(9)}`,
      );
    }
  }
}
