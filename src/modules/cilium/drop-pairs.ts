import type { Flow } from '../../gen/flow/flow.js';

// Cilium reports each denied packet twice: a policy-verdict event (type 5) and
// a drop event (type 1). Counting both would double every alert's count, and
// neither type can simply be ignored (policy-verdict notifications can be off;
// drop events never carry policy names). So the second event of a pair seen
// within a short window is recognised and not counted again.

const PAIR_WINDOW_MS = 1000;

/** FNV-1a over a string's UTF-16 code units, from `h`. */
function mix(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return Math.imul(h ^ 0x1f, 0x01000193);
}

function mixNumber(h: number, n: number): number {
  h = Math.imul(h ^ (n & 0xffff), 0x01000193);
  return Math.imul(h ^ (n >>> 16), 0x01000193);
}

/**
 * The packet's identity (addresses, ports or ICMP type, direction) as a
 * 53-bit number: two 32-bit hashes of it, from different seeds. Two packets
 * a second apart share one with a chance of about n / 2^53 for n packets in
 * that second; a string key cost a string, its hash and the garbage
 * collector's work on it for every dropped flow.
 */
function packetKey(f: Flow): number {
  const l4 = f.l4?.protocol;
  const src = f.IP?.source ?? '';
  const dst = f.IP?.destination ?? '';
  let a = mix(mix(0x811c9dc5, src), dst);
  let b = mix(mix(0x01000193, dst), src);
  let ports = 0;
  let kind = 0;
  if (l4 && (l4.$case === 'TCP' || l4.$case === 'UDP' || l4.$case === 'SCTP')) ports = l4.value.source_port * 65536 + l4.value.destination_port;
  else if (l4) {
    kind = l4.$case === 'ICMPv4' ? 1 : 2;
    ports = (l4.value as { type: number }).type;
  }
  // The port order matters: a reply is another packet.
  a = mixNumber(mixNumber(mixNumber(a, ports >>> 16), ports & 0xffff), kind * 16 + f.traffic_direction);
  b = mixNumber(mixNumber(mixNumber(b, ports & 0xffff), ports >>> 16), kind * 16 + f.traffic_direction + 7);
  const key = (a >>> 0) * 2097152 + (b >>> 11);
  return key === 0 ? 1 : key;
}

/**
 * An open-addressing table of packet key -> entry (time ms * 2, plus 1 for a
 * policy-verdict event), in two typed arrays: nothing per entry for the
 * garbage collector. Key 0 is a free place; entry -1 a removed one.
 */
class PacketTable {
  private keys = new Float64Array(4096);
  private entries = new Float64Array(4096);
  private used = 0;

  /** The place of `key`, or the free place where it would go. */
  private find(key: number): number {
    const mask = this.keys.length - 1;
    // & takes the key modulo 2^32: its low bits, which come from the second hash.
    let i = key & mask;
    for (;;) {
      const k = this.keys[i]!;
      if (k === key || k === 0) return i;
      i = (i + 1) & mask;
    }
  }

  /** The entry of `key`; -1 once removed (which hides an older generation's), undefined if never set. */
  get(key: number): number | undefined {
    const i = this.find(key);
    return this.keys[i] === 0 ? undefined : this.entries[i];
  }

  set(key: number, entry: number): void {
    let i = this.find(key);
    if (this.keys[i] === 0) {
      if (2 * (this.used + 1) > this.keys.length) {
        this.grow();
        i = this.find(key);
      }
      this.keys[i] = key;
      this.used++;
    }
    this.entries[i] = entry;
  }

  remove(key: number): void {
    const i = this.find(key);
    if (this.keys[i] !== 0) this.entries[i] = -1;
  }

  clear(): void {
    if (this.used === 0) return;
    this.keys.fill(0);
    this.used = 0;
  }

  private grow(): void {
    const keys = this.keys;
    const entries = this.entries;
    this.keys = new Float64Array(keys.length * 2);
    this.entries = new Float64Array(keys.length * 2);
    this.used = 0;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] === 0 || entries[i]! < 0) continue;
      const j = this.find(keys[i]!);
      this.keys[j] = keys[i]!;
      this.entries[j] = entries[i]!;
      this.used++;
    }
  }
}

export class DropPairFilter {
  // Two generations instead of a sweep: a flood puts tens of thousands of
  // entries a second here, and visiting each again to expire it cost about as
  // much as adding it. An entry lives in `current`, then in `previous`, so at
  // least one window (its time is still checked); a generation is cleared whole.
  private current = new PacketTable();
  private previous = new PacketTable();
  private generationStart = 0;

  /** True when the flow is the second half of a pair already counted. */
  isPairedRepeat(f: Flow, now = Date.now()): boolean {
    const type = f.event_type?.type ?? 0;
    if (type !== 1 && type !== 5) return false;
    if (now - this.generationStart > PAIR_WINDOW_MS) {
      this.generationStart = now;
      const old = this.previous;
      this.previous = this.current;
      old.clear();
      this.current = old;
    }
    const key = packetKey(f);
    let seen = this.current.get(key);
    const inCurrent = seen !== undefined;
    if (!inCurrent) seen = this.previous.get(key);
    const verdict = type === 5 ? 1 : 0;
    if (seen !== undefined && seen >= 0 && (seen & 1) !== verdict && now - Math.floor(seen / 2) <= PAIR_WINDOW_MS) {
      (inCurrent ? this.current : this.previous).remove(key);
      return true;
    }
    this.current.set(key, now * 2 + verdict);
    return false;
  }
}
