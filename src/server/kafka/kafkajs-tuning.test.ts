import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { crc32c, tuned } from './kafkajs-tuning.js';

const require = createRequire(import.meta.url);
// kafkajs's own byte-at-a-time CRC32C, the reference.
const reference = require('kafkajs/src/protocol/recordBatch/crc32C/crc32C.js') as (b: Buffer) => number;

describe('kafkajs tuning', () => {
  it('computes the CRC32C kafkajs computes, for every length and alignment', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    for (let n = 0; n < 200; n++) {
      const b = Buffer.alloc(n + 3);
      for (let i = 0; i < b.length; i++) b[i] = (i * 131 + n * 7) & 0xff;
      const view = b.subarray(3);
      expect(crc32c(view)).toBe(reference(view) >>> 0);
    }
  });

  it('grows kafkajs encoders without changing what they write', () => {
    expect(tuned.encoder).toBe(true);
    const Encoder = require('kafkajs/src/protocol/encoder.js') as new () => { writeBytes(b: Buffer): unknown; writeInt32(n: number): unknown; buffer: Buffer };
    const e = new Encoder();
    const big = Buffer.alloc(5000, 7);
    e.writeInt32(42);
    e.writeBytes(big);
    expect(e.buffer.length).toBe(4 + 4 + 5000);
    expect(e.buffer.readInt32BE(0)).toBe(42);
    expect(e.buffer.readInt32BE(4)).toBe(5000);
    expect(e.buffer.subarray(8).equals(big)).toBe(true);
  });
});

describe('the record encoder', () => {
  it('writes the bytes kafkajs writes', async () => {
    expect(tuned.record).toBe(true);
    const { fastRecord } = await import('./kafkajs-tuning.js');
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
    const Header = require('kafkajs/src/protocol/recordBatch/header/v0/index.js') as (h: { key: string; value: unknown }) => unknown;
    // kafkajs's own Record (the module in require.cache is the tuned one), rebuilt from its source.
    const { readFileSync } = await import('node:fs');
    const src = readFileSync(require.resolve('kafkajs/src/protocol/recordBatch/record/v0/index.js'), 'utf8');
    const mod = { exports: {} as unknown };
    new Function('require', 'module', src)((p: string) => (p.endsWith('encoder') ? Encoder.prototype.constructor : Header), mod);
    const original = mod.exports as Parameters<typeof fastRecord>[0];
    const fast = fastRecord(original, Encoder.prototype);
    const buf = (e: unknown) => (e as { buffer: Buffer }).buffer;
    const long = 'é'.repeat(3000);
    const cases = [
      { key: 'a/b', value: '{"x":1}' },
      { key: null, value: null },
      { key: undefined, value: Buffer.from([1, 2, 3]) },
      { key: 'k', value: long, offsetDelta: 70000, timestampDelta: 0 },
      { key: Buffer.from('k'), value: 'v', offsetDelta: 3, timestampDelta: -5, headers: { 'verdict-type': 'events', 'verdict-ref': 'a,b,c' } },
      { key: 'k', value: 'v', headers: { multi: ['x', Buffer.from('y')], e: '' } },
      { key: 'k', value: 'v', timestampDelta: 2 ** 40 },
      { key: 'k', value: 'x'.repeat(200), offsetDelta: 127, timestampDelta: 64 },
    ];
    for (const c of cases) expect(buf(fast(c)).equals(buf(original(c)))).toBe(true);
  });
});

describe('the record batch encoder', () => {
  it('writes the bytes kafkajs writes', async () => {
    expect(tuned.recordBatch).toBe(true);
    const { fastRecordBatch, fastRecord } = await import('./kafkajs-tuning.js');
    const { readFileSync } = await import('node:fs');
    const { createRequire: cr } = await import('node:module');
    const file = require.resolve('kafkajs/src/protocol/recordBatch/v0/index.js');
    const mod = { exports: {} as { RecordBatch?: unknown } };
    new Function('require', 'module', readFileSync(file, 'utf8'))(cr(file), mod);
    const original = mod.exports.RecordBatch as Parameters<typeof fastRecordBatch>[0];
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
    const Long = require('kafkajs/src/utils/long.js') as { fromValue: (v: unknown) => never; fromInt: (n: number) => unknown };
    const fast = fastRecordBatch(original, Encoder.prototype, Long.fromValue.bind(Long), crc32c);
    const rec = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as Parameters<typeof fastRecord>[0];
    const records = (n: number) =>
      Array.from({ length: n }, (_, i) => rec({ key: `k${i}`, value: 'v'.repeat(i * 300), offsetDelta: i, headers: { h: String(i) } }));
    const buf = (e: unknown) => (e as { buffer: Buffer }).buffer;
    const cases = [
      { records: records(1), firstTimestamp: 1_700_000_000_000, maxTimestamp: 1_700_000_000_000 },
      {
        records: records(7),
        firstTimestamp: 1_700_000_000_001,
        maxTimestamp: 1_700_000_000_009,
        producerId: Long.fromInt(4242),
        producerEpoch: 3,
        firstSequence: 77,
        lastOffsetDelta: 6,
      },
      { records: [], firstTimestamp: 5, maxTimestamp: 5, transactional: true, partitionLeaderEpoch: 2, firstOffset: Long.fromInt(12) },
      { records: records(3), firstTimestamp: 5, maxTimestamp: 6, producerId: 99, lastOffsetDelta: 2 },
    ];
    for (const c of cases) expect(buf(await fast(c)).equals(buf(await original(c)))).toBe(true);
  });
});
