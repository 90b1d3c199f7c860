// IPv4 and IPv6 addresses and prefixes. IPv4 is a uint32 in a number; IPv6 a
// bigint. IPv4-mapped IPv6 (::ffff:a.b.c.d) is read as IPv4 so a v4 rule
// matches it. Parsing happens once per distinct peer address, not per flow.

export type IpAddr = { readonly v6: false; readonly n: number } | { readonly v6: true; readonly n: bigint };

export interface Cidr {
  readonly v6: boolean;
  readonly bits: number;
  readonly base: number | bigint;
  readonly text: string;
}

export interface CidrRule {
  readonly cidr: Cidr;
  readonly except: readonly Cidr[];
}

function parseV4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const b = Number(p);
    if (b > 255) return null;
    n = n * 256 + b;
  }
  return n;
}

function parseV6(s: string): bigint | number | null {
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (text.length < 2) return null;
  let tail: number | null = null;
  // An embedded IPv4 tail takes the last two groups.
  const lastColon = text.lastIndexOf(':');
  if (text.indexOf('.', lastColon) > lastColon) {
    tail = parseV4(text.slice(lastColon + 1));
    if (tail === null) return null;
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const dbl = text.indexOf('::');
  if (dbl !== text.lastIndexOf('::')) return null;
  let groups: string[];
  if (dbl >= 0) {
    const head = text.slice(0, dbl) === '' ? [] : text.slice(0, dbl).split(':');
    const rest = text.slice(dbl + 2) === '' ? [] : text.slice(dbl + 2).split(':');
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...Array<string>(fill).fill('0'), ...rest];
  } else {
    groups = text.split(':');
  }
  if (groups.length !== 8) return null;
  let n = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    n = (n << 16n) | BigInt(parseInt(g, 16));
  }
  if (tail !== null) n = (n & ~0xffffffffn) | BigInt(tail);
  // ::ffff:a.b.c.d is an IPv4 address.
  if (n >> 32n === 0xffffn) return Number(n & 0xffffffffn);
  return n;
}

export function parseIp(s: string): IpAddr | null {
  if (s.includes(':')) {
    const n = parseV6(s);
    if (n === null) return null;
    return typeof n === 'number' ? { v6: false, n } : { v6: true, n };
  }
  const n = parseV4(s);
  return n === null ? null : { v6: false, n };
}

const V4_MASKS: number[] = Array.from({ length: 33 }, (_, b) => (b === 0 ? 0 : (0xffffffff << (32 - b)) >>> 0));
const V6_ALL = (1n << 128n) - 1n;
function v6Mask(bits: number): bigint {
  return bits === 0 ? 0n : (V6_ALL << BigInt(128 - bits)) & V6_ALL;
}

/** `10.0.0.0/8`, `2001:db8::/32`; a bare address is a host prefix. Host bits are cleared. */
export function parseCidr(text: string): Cidr | null {
  const t = text.trim();
  const slash = t.indexOf('/');
  const addr = slash < 0 ? t : t.slice(0, slash);
  const isV6 = addr.includes(':');
  // A v4-mapped address with a v6 prefix length keeps v6 semantics for the length.
  const raw = isV6 ? parseV6(addr) : parseV4(addr);
  if (raw === null) return null;
  const max = isV6 ? 128 : 32;
  let bits = max;
  if (slash >= 0) {
    const b = t.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return null;
    bits = Number(b);
    if (bits > max) return null;
  }
  if (!isV6) return { v6: false, bits, base: ((raw as number) & V4_MASKS[bits]!) >>> 0, text: t };
  if (typeof raw === 'number') {
    // ::ffff:0:0/96 and longer are IPv4 prefixes written in IPv6 form.
    if (bits < 96) return { v6: true, bits, base: ((0xffffn << 32n) | BigInt(raw)) & v6Mask(bits), text: t };
    const b4 = bits - 96;
    return { v6: false, bits: b4, base: (raw & V4_MASKS[b4]!) >>> 0, text: t };
  }
  return { v6: true, bits, base: raw & v6Mask(bits), text: t };
}

export function cidrContains(c: Cidr, ip: IpAddr): boolean {
  if (c.v6 !== ip.v6) return false;
  if (!ip.v6) return (ip.n & V4_MASKS[c.bits]!) >>> 0 === c.base;
  return (ip.n & v6Mask(c.bits)) === c.base;
}

export function cidrRuleMatches(r: CidrRule, ip: IpAddr): boolean {
  if (!cidrContains(r.cidr, ip)) return false;
  for (const e of r.except) if (cidrContains(e, ip)) return false;
  return true;
}
