import { describe, expect, it } from 'vitest';
import { encodeHeaders, HpackDecoder } from './hpack.js';

const hex = (s: string) => Buffer.from(s, 'hex');

describe('HpackDecoder', () => {
  // RFC 7541 C.4: requests with Huffman-coded strings, each block using the entries the ones before added.
  it('decodes the RFC 7541 request examples in order', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('828684418cf1e3c2e5f23a6ba0ab90f4ff'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
    ]);
    expect(d.decode(hex('828684be5886a8eb10649cbf'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'http'],
      [':path', '/'],
      [':authority', 'www.example.com'],
      ['cache-control', 'no-cache'],
    ]);
    expect(d.decode(hex('828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'))).toEqual([
      [':method', 'GET'],
      [':scheme', 'https'],
      [':path', '/index.html'],
      [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ]);
  });

  // Blocks from Go's encoder (golang.org/x/net/http2/hpack, as gRPC-Go and so Hubble Relay use it) with a
  // 256-byte table: entries added, evicted when the table is full, the table made smaller, and UTF-8 values.
  it("decodes Go's encoder's blocks through additions, evictions and a smaller table", () => {
    const d = new HpackDecoder(256);
    const message = 'relay: no nodes%2C try later ü';
    expect(d.decode(hex('3fe101885f8b1d75d0620d263d4c4d6564408e9acac8b0c842d6958b510f21aa9b903485a9264fafa90b2d03497ea6f66aff'))).toEqual([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['grpc-accept-encoding', 'identity,deflate,gzip'],
    ]);
    expect(d.decode(hex('40889acac8b21234da8f02313440899acac8b5254207317f9bb0b40fd5c52a3a951e42a1515e51367a5281a4b629fffc7ffff87f'))).toEqual([
      ['grpc-status', '14'],
      ['grpc-message', message],
    ]);
    expect(
      d.decode(
        hex(
          '4085f2b507aa6fe9efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7' +
            'efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7ef' +
            'dfbf7efdfbf7efdfbf7efdfbf75f8b1d75d0620d263d4c4d6564',
        ),
      ),
    ).toEqual([
      ['x-long', 'v'.repeat(120)],
      ['content-type', 'application/grpc'],
    ]);
    expect(
      d.decode(
        hex(
          '4085f2b1d3396cc6f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78' +
            'f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c78f1e3c7840889acac8b21234da8f01304085f2b507aa6fe9efdf' +
            'bf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf' +
            '7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7efdfbf7e' +
            'fdfbf7',
        ),
      ),
    ).toEqual([
      ['x-other', 'w'.repeat(80)],
      ['grpc-status', '0'],
      ['x-long', 'v'.repeat(120)],
    ]);
    expect(d.decode(hex('3f4540899acac8b5254207317f9bb0b40fd5c52a3a951e42a1515e51367a5281a4b629fffc7ffff87f4085f2b2273d890173be'))).toEqual([
      ['grpc-message', message],
      ['x-short', 's'],
      ['x-short', 's'],
    ]);
  });

  it('refuses an index past the table, a table larger than announced, and bad Huffman padding', () => {
    expect(() => new HpackDecoder().decode(hex('be'))).toThrow(/index 62 past the table/);
    expect(() => new HpackDecoder(256).decode(hex('3fe11f'))).toThrow(/table size of 4096 over the 256 allowed/);
    // "a" (00011) padded with zeros instead of EOS's ones.
    expect(() => new HpackDecoder().decode(hex('00816181' + '18'))).toThrow(/Huffman padding/);
  });

  // Python's hpack encoder (Huffman on): a table-size update to 100 that evicts what the first block added, entries
  // evicted by newer ones, never-indexed literals with an indexed name (0x1f 0x08) and a new one (0x10), the table grown again.
  it("decodes another encoder's blocks through table-size updates, evictions and never-indexed literals", () => {
    const d = new HpackDecoder();
    expect(
      d.decode(
        hex(
          '885f8b1d75d0620d263d4c4d65644085f2b26c190ba618c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c63f' +
            '408e9acac8b0c842d6958b510f21aa9b903485a9264fafa90b2d03497ea6f66aff',
        ),
      ),
    ).toEqual([
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['x-trace', 'a'.repeat(60)],
      ['grpc-accept-encoding', 'identity,deflate,gzip'],
    ]);
    expect(
      d.decode(
        hex(
          '3f454084f2b1ea2f99084210842108421084210842108421084210842108421084214084f2b27c1f99108421084210842108421084210842108421084210842' +
            '108421f088941496152b24fd4b57f1086f2b20a4b0a9f81474084f2b1ea2f9908421084210842108421084210842108421084210842108421',
        ),
      ),
    ).toEqual([
      ['x-one', '1'.repeat(40)],
      ['x-two', '2'.repeat(40)],
      ['authorization', 'secret-token'],
      ['x-secret', 's'],
      ['x-one', '1'.repeat(40)],
    ]);
    expect(
      d.decode(
        hex(
          '3fe11f40889acac8b21234da8f810740899acac8b5254207317f8c1d142931cf229fffc7ffff874084f2b27c1f9910842108421084210842108421084210' +
            '8421084210842108424085f2b26c190ba618c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c6318c63f',
        ),
      ),
    ).toEqual([
      ['grpc-status', '0'],
      ['grpc-message', 'all good ü'],
      ['x-two', '2'.repeat(40)],
      ['x-trace', 'a'.repeat(60)],
    ]);
    // The table holds what the last blocks added, newest first: x-trace, x-two, grpc-message, grpc-status, x-one.
    expect(d.decode(hex('bebfc0c1c2'))).toEqual([
      ['x-trace', 'a'.repeat(60)],
      ['x-two', '2'.repeat(40)],
      ['grpc-message', 'all good ü'],
      ['grpc-status', '0'],
      ['x-one', '1'.repeat(40)],
    ]);
    expect(() => d.decode(hex('c3'))).toThrow(/index 67 past the table/);
  });

  // Two entries of 1,035 octets (1,000 bytes of 0xff each) fit a 4,096-byte table; counted as decoded text
  // (each 0xff a 3-byte U+FFFD) they would not, and the first would be gone when the encoder refers to it.
  it("counts an entry's size in the octets sent, not in their text", () => {
    const d = new HpackDecoder();
    // 1,000 as an integer with a 7-bit prefix: 127, then 873 in two continuation bytes.
    const entry = (name: string) => Buffer.concat([Buffer.from([0x40, 3]), Buffer.from(name), hex('7fe906'), Buffer.alloc(1000, 0xff)]);
    d.decode(entry('x-a'));
    d.decode(entry('x-b'));
    expect(d.decode(hex('bfbe'))).toEqual([
      ['x-a', '\uFFFD'.repeat(1000)],
      ['x-b', '\uFFFD'.repeat(1000)],
    ]);
  });

  it('refuses an integer with a run of continuation bytes instead of reading NaN', () => {
    // A table-size update and a string length, each 0x7f.. followed by 200 bytes of 0x80.
    const run = Buffer.alloc(200, 0x80);
    expect(() => new HpackDecoder().decode(Buffer.concat([hex('3f'), run, hex('00')]))).toThrow(/an integer too large/);
    expect(() => new HpackDecoder().decode(Buffer.concat([hex('007f'), run, hex('0082')]))).toThrow(/an integer too large/);
    // The largest 32-bit value still reads: 2**32 - 1 as a table size, over the limit.
    expect(() => new HpackDecoder().decode(hex('3fe0ffffff0f'))).toThrow(/table size of 4294967295 over the 4096 allowed/);
  });

  it('reads what encodeHeaders writes', () => {
    const fields: [string, string][] = [
      [':path', '/observer.Observer/GetFlows'],
      ['x-long', 'x'.repeat(300)],
      ['user-agent', 'verdict-agent'],
    ];
    expect(new HpackDecoder().decode(encodeHeaders(fields))).toEqual(fields);
  });
});
