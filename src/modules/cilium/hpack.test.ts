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

  it('reads what encodeHeaders writes', () => {
    const fields: [string, string][] = [
      [':path', '/observer.Observer/GetFlows'],
      ['x-long', 'x'.repeat(300)],
      ['user-agent', 'verdict-agent'],
    ];
    expect(new HpackDecoder().decode(encodeHeaders(fields))).toEqual(fields);
  });
});
