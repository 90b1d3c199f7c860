import { HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE } from './hpack-tables.js';

// Header blocks as an HTTP/2 server sends them (RFC 7541), decoded for the
// Relay client (h2c-call.ts), which reads a response's headers and trailers.
// Every block of a connection goes through one decoder, in order: the
// server's encoder refers to the entries it told this one to keep.

const textDecoder = new TextDecoder();

/**
 * The Huffman code as a binary tree in one array: node i's children are at
 * 2i (bit 0) and 2i + 1 (bit 1); a value >= 0 there is the next node, -1 no
 * code, and -2 - b the byte b.
 */
const TREE = (() => {
  const tree: number[] = [-1, -1];
  for (let b = 0; b < 256; b++) {
    const code = HUFFMAN_CODES[b]!;
    const len = HUFFMAN_LENGTHS[b]!;
    let node = 0;
    for (let i = len - 1; i > 0; i--) {
      const at = 2 * node + ((code >>> i) & 1);
      if (tree[at] === -1) {
        tree[at] = tree.length / 2;
        tree.push(-1, -1);
      }
      node = tree[at]!;
    }
    tree[2 * node + (code & 1)] = -2 - b;
  }
  return Int32Array.from(tree);
})();

// As the Relay client's other stream errors: the gRPC code the failure would have, then what happened.
function malformed(what: string): Error {
  return new Error(`INTERNAL: the server sent a malformed header block: ${what}`);
}

/** The Huffman-coded bytes src[at, end), decoded. */
function huffman(src: Uint8Array, at: number, end: number): Uint8Array {
  const out = new Uint8Array((end - at) * 2);
  let n = 0;
  let node = 0;
  // Bits read since the last whole symbol, and whether all were ones: the padding, which must be EOS's first bits.
  let pending = 0;
  let ones = true;
  for (let i = at; i < end; i++) {
    const byte = src[i]!;
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >>> bit) & 1;
      const next = TREE[2 * node + one]!;
      pending++;
      ones &&= one === 1;
      if (next === -1) throw malformed('an invalid Huffman code');
      if (next >= 0) node = next;
      else {
        out[n++] = -2 - next;
        node = 0;
        pending = 0;
        ones = true;
      }
    }
  }
  if (pending > 7 || !ones) throw malformed('invalid Huffman padding');
  return out.subarray(0, n);
}

/**
 * A dynamic table entry: name, value, the name's octets and the entry's size.
 * Sizes count the octets as sent (RFC 7541 section 4.1), which the encoder
 * counts too: bytes that are not UTF-8 become longer text.
 */
type Entry = [name: string, value: string, nameOctets: number, size: number];

/** Continuation bytes an integer may take: 5 hold 2**35, past any size or length of 32 bits. */
const MAX_CONTINUATION = 5;

export class HpackDecoder {
  /** Newest first: index 62 is entries[0]. */
  private entries: Entry[] = [];
  private size = 0;
  private maxSize: number;
  private pos = 0;
  /** The octets of the last string read. */
  private octets = 0;

  /** `limit`: the SETTINGS_HEADER_TABLE_SIZE this side announced (HTTP/2's default, 4096, unless it announced another). */
  constructor(private readonly limit = 4096) {
    this.maxSize = limit;
  }

  /** The header fields of one complete block (HEADERS and its CONTINUATION frames' fragments together), in order. */
  decode(block: Uint8Array): [string, string][] {
    const fields: [string, string][] = [];
    this.pos = 0;
    while (this.pos < block.length) {
      const b = block[this.pos]!;
      if (b & 0x80) {
        fields.push(this.entry(this.integer(block, 7)));
      } else if (b & 0x40) {
        const entry = this.literal(block, 6);
        this.insert(entry);
        fields.push([entry[0], entry[1]]);
      } else if (b & 0x20) {
        const size = this.integer(block, 5);
        if (size > this.limit) throw malformed(`a table size of ${size} over the ${this.limit} allowed`);
        this.maxSize = size;
        this.evict(0);
      } else {
        const entry = this.literal(block, 4);
        fields.push([entry[0], entry[1]]);
      }
    }
    return fields;
  }

  private entry(index: number): [string, string] {
    const [name, value] = this.at(index);
    return [name, value];
  }

  /** The entry at `index`, static (its names are ASCII) or dynamic. */
  private at(index: number): Readonly<Entry> {
    if (index === 0) throw malformed('index 0');
    if (index <= STATIC_TABLE.length) {
      const [name, value] = STATIC_TABLE[index - 1]!;
      return [name, value, name.length, 0];
    }
    const e = this.entries[index - STATIC_TABLE.length - 1];
    if (!e) throw malformed(`index ${index} past the table`);
    return e;
  }

  /** A literal field whose name index has a `prefix`-bit prefix (0: the name follows as a string), with its size as an entry. */
  private literal(block: Uint8Array, prefix: number): Entry {
    const index = this.integer(block, prefix);
    let name: string;
    let nameOctets: number;
    if (index === 0) {
      name = this.string(block);
      nameOctets = this.octets;
    } else [name, , nameOctets] = this.at(index);
    const value = this.string(block);
    return [name, value, nameOctets, nameOctets + this.octets + 32];
  }

  private insert(entry: Entry): void {
    const size = entry[3];
    this.evict(size);
    // An entry larger than the table empties it and is not kept (RFC 7541 section 4.4).
    if (size > this.maxSize) return;
    this.entries.unshift(entry);
    this.size += size;
  }

  /** Drops the oldest entries until `room` more fits. */
  private evict(room: number): void {
    while (this.entries.length > 0 && this.size + room > this.maxSize) this.size -= this.entries.pop()![3];
  }

  /** An integer with an N-bit prefix (RFC 7541 section 5.1), from this.pos. */
  private integer(block: Uint8Array, prefix: number): number {
    const max = (1 << prefix) - 1;
    let v = block[this.pos++]! & max;
    if (v < max) return v;
    // Bounded: zero-valued continuation bytes would otherwise run the scale to Infinity and the value to NaN.
    for (let scale = 1, n = 0; n < MAX_CONTINUATION; scale *= 128, n++) {
      if (this.pos >= block.length) throw malformed('a truncated integer');
      const b = block[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (v > 0xffffffff) throw malformed('an integer too large');
      if (!(b & 0x80)) return v;
    }
    throw malformed('an integer too large');
  }

  /** A string literal (RFC 7541 section 5.2), from this.pos. */
  private string(block: Uint8Array): string {
    if (this.pos >= block.length) throw malformed('a missing string');
    const coded = (block[this.pos]! & 0x80) !== 0;
    const len = this.integer(block, 7);
    const at = this.pos;
    if (at + len > block.length) throw malformed('a truncated string');
    this.pos = at + len;
    const octets = coded ? huffman(block, at, at + len) : block.subarray(at, at + len);
    this.octets = octets.length;
    return textDecoder.decode(octets);
  }
}

/** The header block of a request, as literals that leave the server's table alone (never Huffman-coded: a request is sent once per stream). */
export function encodeHeaders(fields: readonly (readonly [string, string])[]): Buffer {
  const parts: Buffer[] = [];
  const integer = (first: number, prefix: number, v: number) => {
    const max = (1 << prefix) - 1;
    if (v < max) return parts.push(Buffer.from([first | v]));
    const bytes = [first | max];
    for (v -= max; v >= 128; v = Math.floor(v / 128)) bytes.push((v % 128) | 0x80);
    bytes.push(v);
    parts.push(Buffer.from(bytes));
  };
  const string = (s: string) => {
    const b = Buffer.from(s);
    integer(0, 7, b.length);
    parts.push(b);
  };
  for (const [name, value] of fields) {
    // Literal without indexing, new name.
    parts.push(Buffer.from([0]));
    string(name);
    string(value);
  }
  return Buffer.concat(parts);
}
