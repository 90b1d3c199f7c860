import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { crc32c, keyPartition, murmur2, tuned } from './kafkajs-tuning.js';

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

  it('is the CRC32C kafkajs computes its record batches with', () => {
    expect(tuned.crc32c).toBe(true);
    expect(require('kafkajs/src/protocol/recordBatch/crc32C/index.js')).toBe(crc32c);
  });

  it('chains over pieces to the sum of their concatenation, on batch-sized inputs', () => {
    // A 900 KB batch of ~1.5 KB JSON events, as a partition's record batch can be.
    let seed = 7;
    const batch = Buffer.allocUnsafe(900 * 1024);
    for (let i = 0; i < batch.length; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      batch[i] = seed >>> 24;
    }
    const whole = reference(batch) >>> 0;
    expect(crc32c(batch)).toBe(whole);
    // Pieces as the record batch encoder hands them on: small heads and tails, values of every size, odd offsets, empty ones.
    for (const sizes of [[40, 31, 1536, 40], [1], [0, 17, 0, 255, 256, 1537, 3], [450 * 1024, 7]]) {
      let sum = crc32c(batch.subarray(0, 0));
      let at = 0;
      for (let i = 0; at < batch.length; i++) {
        const n = Math.min(sizes[i % sizes.length]!, batch.length - at);
        sum = crc32c(batch.subarray(at, at + n), sum);
        at += n;
      }
      expect(sum).toBe(whole);
    }
    // A piece continues the sum of what came before it, not a fresh one.
    const event = batch.subarray(1001, 1001 + 1536);
    expect(crc32c(event, crc32c(batch.subarray(0, 1001)))).toBe(reference(batch.subarray(0, 2537)) >>> 0);
    expect(crc32c(event, crc32c(batch.subarray(0, 1001)))).not.toBe(crc32c(event));
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

describe('murmur2', () => {
  // kafkajs's own Long-based murmur2 and default partitioner, the reference.
  const reference = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: string) => number;
  const { Partitioners } = require('kafkajs') as typeof import('kafkajs');

  it('hashes every key as kafkajs does: all tail lengths, non-ASCII, lone surrogates, long keys', () => {
    // Java's murmur2 of "21" is -973932308 (the Kafka client's own test vector).
    expect(murmur2('21')).toBe(-973932308);
    const keys = ['', 'a', 'ab', 'abc', 'abcd', 'prod/8324', 'é', 'Grüße/日本語', '😀x', '\ud800', 'z'.repeat(1400), 'ü'.repeat(2000)];
    let seed = 1;
    for (let i = 0; i < 2000; i++) {
      let k = '';
      const len = i % 97;
      for (let j = 0; j < len; j++) {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        // Mostly ASCII, some 2-, 3- and 4-byte UTF-8 characters.
        const r = seed % 100;
        k += r < 85 ? String.fromCharCode(32 + ((seed >>> 8) % 95)) : r < 92 ? 'ß' : r < 97 ? '語' : '🚀';
      }
      keys.push(k);
    }
    for (const k of keys) expect(murmur2(k), JSON.stringify(k.slice(0, 40))).toBe(reference(k));
  });

  it("places keys in the partitions kafkajs's default partitioner picks", () => {
    const partitioner = Partitioners.DefaultPartitioner();
    for (const n of [1, 3, 6, 12]) {
      const partitionMetadata = Array.from({ length: n }, (_, i) => ({
        partitionId: i,
        leader: 0,
        partitionErrorCode: 0,
        replicas: [0],
        isr: [0],
        offlineReplicas: [],
      }));
      for (let i = 0; i < 500; i++) {
        const key = `agent-${i % 7}/${(i * 2654435761).toString(16)}`;
        expect(keyPartition(key, n)).toBe(partitioner({ topic: 't', partitionMetadata, message: { key, value: null } }));
      }
    }
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

/** A kafkajs module as it ships (the one in require.cache is the tuned one), rebuilt from its source with its own requires. */
async function shipped<T>(path: string): Promise<T> {
  const { readFileSync } = await import('node:fs');
  const { createRequire: cr } = await import('node:module');
  const file = require.resolve(path);
  const mod = { exports: {} as unknown };
  new Function('require', 'module', readFileSync(file, 'utf8'))(cr(file), mod);
  return mod.exports as T;
}

describe('the produce request and request frame encoders', () => {
  it('frame a request as kafkajs does', async () => {
    expect(tuned.request).toBe(true);
    const { fastRequest } = await import('./kafkajs-tuning.js');
    const Encoder = require('kafkajs/src/protocol/encoder.js') as {
      prototype: object;
      new (): { writeInt32(n: number): unknown; writeBytes(b: Buffer): unknown };
    };
    const original = await shipped<Parameters<typeof fastRequest>[0]>('kafkajs/src/protocol/request.js');
    const fast = fastRequest(original, Encoder.prototype);
    const body = () => {
      const e = new Encoder();
      e.writeInt32(7);
      e.writeBytes(Buffer.alloc(3000, 9));
      return e;
    };
    const buf = (e: unknown) => (e as { buffer: Buffer }).buffer;
    for (const clientId of ['verdict-server', null, 'réplica-ü', '']) {
      const r = { correlationId: 123456, clientId, request: { apiKey: 0, apiVersion: 7, encode: async () => body() } };
      expect(buf(await fast(r)).equals(buf(await original(r)))).toBe(true);
    }
  });

  it('writes a request as its frame and its pieces in one writev, the bytes kafkajs writes', async () => {
    const { fastRequest, fastProduce, writeRequest } = await import('./kafkajs-tuning.js');
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
    const Long = require('kafkajs/src/utils/long.js') as { fromInt: (n: number) => unknown };
    const original = await shipped<Parameters<typeof fastRequest>[0]>('kafkajs/src/protocol/request.js');
    const produce = require('kafkajs/src/protocol/requests/produce/v3/request.js') as Parameters<typeof fastProduce>[0];
    const shippedProduce = await shipped<Parameters<typeof fastProduce>[0]>('kafkajs/src/protocol/requests/produce/v3/request.js');
    // A socket that records what reaches it, and whether it came corked (one writev).
    const written: { data: Buffer; corked: number }[] = [];
    let corked = 0;
    const socket = {
      cork: () => void corked++,
      uncork: () => void corked--,
      write: writeRequest(function (this: unknown, data: unknown) {
        written.push({ data: data as Buffer, corked });
        return true;
      }),
    };
    const messages = Array.from({ length: 40 }, (_, i) => ({ key: `prod/fp-${i}`, value: Buffer.from('x'.repeat(900 + i)), timestamp: 1_700_000_000_000 }));
    const input = {
      acks: -1,
      timeout: 30000,
      producerId: Long.fromInt(7),
      topicData: [{ topic: 'v.log', partitions: [{ partition: 2, firstSequence: 5, messages }] }],
    };
    const framed = await fastRequest(original, Encoder.prototype, true)({ correlationId: 9, clientId: 'verdict-server', request: produce(input) });
    const want = (await original({ correlationId: 9, clientId: 'verdict-server', request: shippedProduce(input) })) as unknown as { buffer: Buffer };
    socket.write((framed as unknown as { buffer: Buffer }).buffer, 'binary');
    expect(written.length).toBeGreaterThan(2);
    expect(written.every((w) => w.corked === 1)).toBe(true);
    expect(Buffer.concat(written.map((w) => w.data)).equals(want.buffer)).toBe(true);
    expect((framed as unknown as { size(): number }).size()).toBe(want.buffer.length);
    // Anything else is written as it is.
    written.length = 0;
    socket.write(Buffer.from('plain'));
    expect(written).toEqual([{ data: Buffer.from('plain'), corked: 0 }]);
  });

  it('writes the produce body kafkajs writes, for several topics and partitions', async () => {
    expect(tuned.produce).toBe(true);
    const { fastProduce } = await import('./kafkajs-tuning.js');
    const Encoder = require('kafkajs/src/protocol/encoder.js') as { prototype: object };
    const Long = require('kafkajs/src/utils/long.js') as { fromInt: (n: number) => unknown };
    type Produce = Parameters<typeof fastProduce>[0];
    // The shipped v3 request, built on the (tuned) record and record batch encoders in require.cache, as the fast one is.
    const original = await shipped<Produce>('kafkajs/src/protocol/requests/produce/v3/request.js');
    const record = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as Parameters<typeof fastProduce>[1];
    const { RecordBatch } = require('kafkajs/src/protocol/recordBatch/v0/index.js') as { RecordBatch: Parameters<typeof fastProduce>[2] };
    const fast = fastProduce(original, record, RecordBatch, Encoder.prototype, Long.fromInt(-1));
    const msgs = (n: number, t: number) =>
      Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: 'é'.repeat(i * 200), timestamp: t + ((i * 7) % 5), headers: { 'verdict-type': 'events' } }));
    const cases = [
      { acks: -1, timeout: 30000, topicData: [{ topic: 'v.log', partitions: [{ partition: 0, firstSequence: 0, messages: msgs(1, 1_700_000_000_000) }] }] },
      {
        acks: -1,
        timeout: 30000,
        producerId: Long.fromInt(4242),
        producerEpoch: 2,
        topicData: [
          {
            topic: 'v.log',
            partitions: [
              { partition: 3, firstSequence: 17, messages: msgs(5, 1_700_000_000_000) },
              { partition: 5, firstSequence: 2, messages: msgs(2, 1_700_000_000_100) },
            ],
          },
          { topic: 'v.alerts-é', partitions: [{ partition: 1, firstSequence: 9, messages: msgs(3, 1_700_000_000_050) }] },
        ],
      },
      { acks: 1, timeout: 500, transactionalId: 'tx-1', topicData: [] },
    ];
    const buf = (e: unknown) => (e as { buffer: Buffer }).buffer;
    for (const c of cases) {
      const [a, b] = [fast(c), original(c)];
      expect(a.apiVersion).toBe(3);
      expect(buf(await a.encode()).equals(buf(await b.encode()))).toBe(true);
    }
  });
  it("arms the request queue's pending check only while a request waits (kafkajs 2.2.4 re-armed a 1 ms timer for ever)", async () => {
    expect(tuned.requestQueue).toBe(true);
    type Queue = {
      throttledUntil: number;
      throttleCheckTimeoutId: NodeJS.Timeout | null;
      pending: unknown[];
      checkPendingRequests(): void;
      push(r: object): void;
      destroy(): void;
    };
    const RequestQueue = require('kafkajs/src/network/requestQueue/index.js') as new (o: object) => Queue;
    const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };
    const queue = new RequestQueue({ maxInFlightRequests: null, requestTimeout: 30_000, enforceRequestTimeout: false, clientId: 't', broker: 'b:1', logger });
    vi.useFakeTimers();
    try {
      // What kafkajs runs after every response: with nothing waiting, no timer is left behind.
      queue.checkPendingRequests();
      expect(queue.throttleCheckTimeoutId).toBeNull();

      // Throttled by the broker: a request waits, and the check that sends it is armed for the throttle's end.
      queue.throttledUntil = Date.now() + 30;
      let sent = 0;
      queue.push({
        entry: { correlationId: 1, apiKey: 3, apiName: 'Metadata', apiVersion: 0, resolve: () => undefined, reject: () => undefined },
        expectResponse: false,
        requestTimeout: 30_000,
        sendRequest: () => {
          sent++;
        },
      });
      expect([sent, queue.pending.length, queue.throttleCheckTimeoutId !== null]).toEqual([0, 1, true]);
      await vi.advanceTimersByTimeAsync(100);
      expect([sent, queue.pending.length, queue.throttleCheckTimeoutId]).toEqual([1, 0, null]);
    } finally {
      queue.destroy();
      vi.useRealTimers();
    }
  });
});
