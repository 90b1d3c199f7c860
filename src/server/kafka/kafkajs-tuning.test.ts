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
