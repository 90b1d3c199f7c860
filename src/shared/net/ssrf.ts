import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { isVerdictError, VerdictError } from '../errors.js';

// Webhook URLs come from people with admin tokens, not from the operator of the
// machine: without a guard, "deliver to http://169.254.169.254/..." reads cloud
// credentials and "http://10.0.0.5/" probes the cluster. The check runs on the
// address the connection actually uses (inside the socket's lookup), so a name
// that resolves to a public address when the integration is created and to a
// private one later (DNS rebinding) is still refused.

const RANGES: [string, number, 'ipv4' | 'ipv6', string][] = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'shared/CGNAT (holds cloud metadata such as 100.100.100.200)'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link-local (holds cloud metadata 169.254.169.254)'],
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'IETF protocol assignments'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'benchmarking'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'],
  ['168.63.129.16', 32, 'ipv4', 'metadata (Azure WireServer)'],
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  // Deprecated IPv4-compatible addresses (::a.b.c.d): never a public endpoint,
  // and a host with a sit tunnel may route ::127.0.0.1 to its own loopback.
  ['::', 96, 'ipv6', 'IPv4-compatible (deprecated)'],
  ['64:ff9b:1::', 48, 'ipv6', 'local NAT64'],
  ['100::', 64, 'ipv6', 'discard'],
  ['fc00::', 7, 'ipv6', 'private (unique local; holds metadata fd00:ec2::254)'],
  ['fe80::', 10, 'ipv6', 'link-local'],
  ['fec0::', 10, 'ipv6', 'site-local (deprecated private)'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const blocked = RANGES.map(([net, bits, family, why]) => {
  const b = new BlockList();
  b.addSubnet(net, bits, family);
  return { b, why };
});

const family = (ip: string): 'ipv4' | 'ipv6' => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/** The eight 16-bit groups of an IPv6 address (a dotted IPv4 tail allowed). */
function groups6(ip: string): number[] | undefined {
  let s = ip.toLowerCase().replace(/%.*$/, '');
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail];
  return all.length === 8 ? all.map((g) => parseInt(g, 16)) : undefined;
}

const v4 = (hi: number, lo: number) => [hi >>> 8, hi & 255, lo >>> 8, lo & 255].join('.');

/**
 * The IPv4 address an IPv6 address carries and the mechanism that reaches it:
 * NAT64 (64:ff9b::/96), SIIT (::ffff:0:a.b.c.d) and 6to4 (2002:aabb:ccdd::/48).
 * IPv4-mapped (::ffff:a.b.c.d) needs no help: BlockList matches it against the
 * IPv4 ranges itself.
 */
function embeddedIPv4(ip: string): { v4: string; via: string } | undefined {
  const g = groups6(ip);
  if (!g) return undefined;
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 0 && g[3] === 0 && g[4] === 0 && (g[5] === 0 || g[5] === 0xffff))
    return { v4: v4(g[6]!, g[7]!), via: 'NAT64' };
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0xffff && g[5] === 0) return { v4: v4(g[6]!, g[7]!), via: 'SIIT' };
  if (g[0] === 0x2002) return { v4: v4(g[1]!, g[2]!), via: '6to4' };
  return undefined;
}

/** Why an address may not be reached by default, or undefined for a public one. */
export function restrictedReason(ip: string): string | undefined {
  const f = family(ip);
  const direct = blocked.find(({ b }) => b.check(ip, f))?.why;
  if (direct || f === 'ipv4') return direct;
  const e = embeddedIPv4(ip);
  const why = e && restrictedReason(e.v4);
  return why ? `${why}, through ${e.via}` : undefined;
}

/** Which non-public destinations the operator allows (webhooks.allow_private_addresses). */
export class AddressPolicy {
  private readonly nets = new BlockList();
  private readonly hosts = new Set<string>();
  // BlockList checks allocate; the same endpoint is checked on every try.
  private readonly verdicts = new Map<string, string | undefined>();

  /** `resolve` stands in for DNS in tests (a name that changes its answer). */
  constructor(
    readonly allow: readonly string[] = [],
    private readonly resolve: typeof dnsLookup = dnsLookup,
  ) {
    for (const e of allow) {
      const [addr, bits] = e.split('/');
      const v = isIP(addr!);
      if (v) this.nets.addSubnet(addr!, bits === undefined ? (v === 4 ? 32 : 128) : Number(bits), v === 4 ? 'ipv4' : 'ipv6');
      else this.hosts.add(normalizeHost(addr!));
    }
  }

  /** Undefined when `ip` may be reached for `host`; else the refusal, saying what to do. */
  check(host: string, ip: string): string | undefined {
    const key = `${host}|${ip}`;
    if (this.verdicts.has(key)) return this.verdicts.get(key);
    if (this.verdicts.size > 10_000) this.verdicts.clear();
    const v = this.decide(host, ip);
    this.verdicts.set(key, v);
    return v;
  }

  private decide(host: string, ip: string): string | undefined {
    const why = restrictedReason(ip);
    if (!why) return undefined;
    if (this.hosts.has(normalizeHost(host)) || this.nets.check(ip, family(ip))) return undefined;
    const shown = host === ip || host === `[${ip}]` ? ip : `${host} (${ip})`;
    return `refused to deliver to ${shown}: it is a ${why} address, which webhook endpoints may not reach unless the operator allows it; if this endpoint is yours, add "${ip}" (or its network, or the host name) to webhooks.allow_private_addresses in the server config`;
  }

  /** A `lookup` for node:net that only ever hands out permitted addresses. */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolve(hostname, { ...options, all: true }, (err, addresses) => {
      const cb = callback as unknown as (e: NodeJS.ErrnoException | null, a: string | LookupAddress[], f?: number) => void;
      if (err) return cb(err, []);
      const list = addresses as LookupAddress[];
      const ok = list.filter((a) => this.check(hostname, a.address) === undefined);
      if (ok.length === 0) {
        const e = new VerdictError('VERDICT_WEBHOOK_ADDRESS_REFUSED', this.check(hostname, list[0]?.address ?? '') ?? `${hostname} did not resolve`);
        return cb(e as NodeJS.ErrnoException, []);
      }
      if (options.all) return cb(null, ok);
      cb(null, ok[0]!.address, ok[0]!.family);
    });
  };

  /** Checks a URL before connecting: literal IPs never reach `lookup`, so they are checked here. */
  checkLiteral(url: URL): string | undefined {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    return isIP(host) ? this.check(host, host) : undefined;
  }

  /**
   * The refusal of a URL that is known without DNS: a literal IP, or localhost (refused when neither of its
   * loopback addresses is allowed). The server config refuses such an integration at load; a name resolved
   * at runtime is checked at connect time, since its addresses may change.
   */
  checkWithoutDns(url: URL): string | undefined {
    const literal = this.checkLiteral(url);
    if (literal) return literal;
    const host = normalizeHost(url.hostname);
    if (host !== 'localhost' && !host.endsWith('.localhost')) return undefined;
    const v4 = this.check(host, '127.0.0.1');
    return v4 && this.check(host, '::1') ? v4 : undefined;
  }

  /** Resolves and checks a URL now (for the admin API, to refuse early); the connect-time check still applies. */
  async checkUrl(url: URL): Promise<string | undefined> {
    const literal = this.checkLiteral(url);
    if (literal) return literal;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host)) return undefined;
    return new Promise((resolve) => {
      this.lookup(host, { all: true }, (err) => {
        if (isVerdictError(err, 'VERDICT_WEBHOOK_ADDRESS_REFUSED')) resolve(err.message);
        // A name that does not resolve yet is not an SSRF risk; delivery reports it.
        else resolve(undefined);
      });
    });
  }
}

function normalizeHost(h: string): string {
  return h.toLowerCase().replace(/\.$/, '');
}
