import type { Flow } from '../../../gen/flow/flow.js';
import { compileHttpRule, compileNameMatcher, type HttpRule, type NameMatcher } from './l7.js';
import { VerdictError, isVerdictError } from '../../../shared/errors.js';

// Ports and protocols of toPorts / Kubernetes `ports`, and ICMP rules. A port
// rule is a protocol mask and a range: `port: 0` is every port, endPort makes
// a range, ANY (or no protocol) is TCP, UDP and SCTP but not ICMP, which only
// `icmps` or an L3-only rule allow.

export const PROTO = { none: 0, TCP: 1, UDP: 2, SCTP: 3, ICMPv4: 4, ICMPv6: 5 } as const;
export type Proto = (typeof PROTO)[keyof typeof PROTO];
export const PROTO_NAMES = ['', 'TCP', 'UDP', 'SCTP', 'ICMPv4', 'ICMPv6'] as const;

const BIT = (p: Proto) => 1 << p;
const ANY_MASK = BIT(PROTO.TCP) | BIT(PROTO.UDP) | BIT(PROTO.SCTP);
const PROTO_MASKS: Readonly<Record<string, number>> = { TCP: BIT(PROTO.TCP), UDP: BIT(PROTO.UDP), SCTP: BIT(PROTO.SCTP), ANY: ANY_MASK };

/** What a port rule asks of the proxy; null when it is L4 only. */
export interface L7Rules {
  readonly http: readonly HttpRule[] | null;
  readonly dns: readonly NameMatcher[] | null;
  /** Kafka or generic L7 rules: not visible in Hubble's flow model, so never blamed. */
  readonly opaque: boolean;
}

export interface PortEntry {
  readonly mask: number;
  readonly lo: number;
  readonly hi: number;
  /** A named container port; resolved by the engine's namedPorts option. */
  readonly named: string | null;
  readonly l7: L7Rules | null;
  readonly text: string;
}

export interface IcmpEntry {
  readonly proto: Proto; // ICMPv4 or ICMPv6
  readonly type: number;
}

/** toPorts + icmps of one rule; null on a rule means every protocol and port. */
export interface L4Matcher {
  readonly ports: readonly PortEntry[];
  readonly icmps: readonly IcmpEntry[];
}

/** The L4 facts of a flow that policies look at. */
export interface FlowL4 {
  proto: Proto;
  /** Destination port, or the ICMP type. */
  port: number;
}

export function flowL4(flow: Flow, out: FlowL4): FlowL4 {
  const p = flow.l4?.protocol;
  if (p === undefined) {
    out.proto = PROTO.none;
    out.port = 0;
    return out;
  }
  switch (p.$case) {
    case 'TCP':
    case 'UDP':
    case 'SCTP':
      out.proto = PROTO[p.$case];
      out.port = p.value.destination_port;
      break;
    case 'ICMPv4':
    case 'ICMPv6':
      out.proto = PROTO[p.$case];
      out.port = p.value.type;
      break;
    default:
      out.proto = PROTO.none;
      out.port = 0;
  }
  return out;
}

export type NamedPorts = ReadonlyMap<string, readonly number[]>;

/** 0 no, 1 yes, 2 a named port the engine cannot resolve. */
export const PortMatch = { No: 0, Yes: 1, Unknown: 2 } as const;
export type PortMatch = (typeof PortMatch)[keyof typeof PortMatch];

export function portEntryMatches(e: PortEntry, proto: Proto, port: number, named: NamedPorts | undefined): PortMatch {
  if ((e.mask & (1 << proto)) === 0) return PortMatch.No;
  if (e.named !== null) {
    const ns = named?.get(e.named);
    if (!ns) return PortMatch.Unknown;
    return ns.includes(port) ? PortMatch.Yes : PortMatch.No;
  }
  return port >= e.lo && port <= e.hi ? PortMatch.Yes : PortMatch.No;
}

export function icmpMatches(e: IcmpEntry, proto: Proto, type: number): boolean {
  return e.proto === proto && e.type === type;
}

const NAMED_PORT = /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/;

function portNumber(v: unknown, where: string): number | string {
  if (v === undefined || v === null || v === '') return 0;
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 65535) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: ${v} is not a port number (0-65535)`);
    return v;
  }
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return portNumber(Number(v), where);
    if (NAMED_PORT.test(v) && /[a-z]/.test(v)) return v;
    throw new VerdictError(
      'VERDICT_POLICY_INVALID',
      `${where}: "${v}" is neither a port number (0-65535) nor a port name (lower-case letters, digits and '-', up to 15 characters)`,
    );
  }
  throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a port number or name`);
}

function protoMask(v: unknown, where: string, dflt: string): number {
  const s = v === undefined || v === null || v === '' ? dflt : String(v).toUpperCase();
  const m = PROTO_MASKS[s];
  if (m === undefined)
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: protocol "${String(v)}" is not one of TCP, UDP, SCTP, ANY (use icmps for ICMP)`);
  return m;
}

function portEntry(o: unknown, where: string, dfltProto: string, l7: L7Rules | null): PortEntry {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected {port, protocol}`);
  const r = o as Record<string, unknown>;
  const mask = protoMask(r.protocol, `${where}.protocol`, dfltProto);
  const port = portNumber(r.port, `${where}.port`);
  const proto = r.protocol === undefined || r.protocol === null || r.protocol === '' ? dfltProto : String(r.protocol).toUpperCase();
  if (typeof port === 'string') {
    if (r.endPort !== undefined && r.endPort !== null && r.endPort !== 0)
      throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.endPort: a range needs a numeric port, not the name "${port}"`);
    return { mask, lo: 0, hi: 65535, named: port, l7, text: `${port}/${proto}` };
  }
  let hi = port === 0 ? 65535 : port;
  if (r.endPort !== undefined && r.endPort !== null && r.endPort !== 0) {
    const end = portNumber(r.endPort, `${where}.endPort`);
    if (typeof end !== 'number' || end < port)
      throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.endPort: ${String(r.endPort)} must be a number not below port ${port}`);
    if (port !== 0) hi = end;
  }
  return { mask, lo: port, hi, named: null, l7, text: port === 0 ? `*/${proto}` : hi !== port ? `${port}-${hi}/${proto}` : `${port}/${proto}` };
}

function compileL7(rules: unknown, where: string): L7Rules | null {
  if (rules === undefined || rules === null) return null;
  if (typeof rules !== 'object' || Array.isArray(rules))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected an object with http, dns, kafka or l7 rules`);
  const r = rules as Record<string, unknown>;
  const list = (k: string) => {
    const v = r[k];
    if (v === undefined || v === null) return null;
    if (!Array.isArray(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.${k}: expected a list`);
    return v.length === 0 ? null : v;
  };
  try {
    const http = list('http')?.map((h, i) => compileHttpRule(h, `${where}.http[${i}]`)) ?? null;
    const dns = list('dns')?.map((d, i) => compileNameMatcher(d, `${where}.dns[${i}]`)) ?? null;
    const opaque = list('kafka') !== null || list('l7') !== null;
    if (!http && !dns && !opaque) return null;
    return { http, dns, opaque };
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_POLICY_INVALID')) throw new VerdictError('VERDICT_POLICY_INVALID', e.message);
    throw e;
  }
}

/** Cilium toPorts: [{ports: [{port, endPort, protocol}], rules}]. Deny rules pass allowL7 = false. */
export function compileCiliumPorts(v: unknown, where: string, allowL7: boolean): PortEntry[] {
  if (!Array.isArray(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a list of {ports, rules}`);
  const out: PortEntry[] = [];
  v.forEach((pr: unknown, i: number) => {
    const w = `${where}[${i}]`;
    if (typeof pr !== 'object' || pr === null || Array.isArray(pr)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {ports, rules}`);
    const r = pr as Record<string, unknown>;
    const l7 = allowL7 ? compileL7(r.rules, `${w}.rules`) : null;
    const ports = r.ports;
    if (ports === undefined || ports === null || (Array.isArray(ports) && ports.length === 0)) {
      // Rules without ports apply to every port.
      out.push({ mask: ANY_MASK, lo: 0, hi: 65535, named: null, l7, text: '*/ANY' });
      return;
    }
    if (!Array.isArray(ports)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.ports: expected a list of {port, protocol}`);
    for (const [j, p] of (ports as unknown[]).entries()) out.push(portEntry(p, `${w}.ports[${j}]`, 'ANY', l7));
  });
  return out;
}

/** Kubernetes NetworkPolicyPort list: protocol defaults to TCP, no port means every port. */
export function compileK8sPorts(v: unknown, where: string): PortEntry[] {
  if (!Array.isArray(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a list of {protocol, port, endPort}`);
  return v.map((p, i) => portEntry(p, `${where}[${i}]`, 'TCP', null));
}

// ICMP type names Cilium accepts (IANA names).
const ICMP4_TYPES: Readonly<Record<string, number>> = {
  EchoReply: 0,
  DestinationUnreachable: 3,
  Redirect: 5,
  Echo: 8,
  EchoRequest: 8,
  RouterAdvertisement: 9,
  RouterSelection: 10,
  TimeExceeded: 11,
  ParameterProblem: 12,
  Timestamp: 13,
  TimestampReply: 14,
  Photuris: 40,
  ExtendedEchoRequest: 42,
  ExtendedEchoReply: 43,
};
const ICMP6_TYPES: Readonly<Record<string, number>> = {
  DestinationUnreachable: 1,
  PacketTooBig: 2,
  TimeExceeded: 3,
  ParameterProblem: 4,
  EchoRequest: 128,
  EchoReply: 129,
  MulticastListenerQuery: 130,
  MulticastListenerReport: 131,
  MulticastListenerDone: 132,
  RouterSolicitation: 133,
  RouterAdvertisement: 134,
  NeighborSolicitation: 135,
  NeighborAdvertisement: 136,
  RedirectMessage: 137,
  RouterRenumbering: 138,
  ICMPNodeInformationQuery: 139,
  ICMPNodeInformationResponse: 140,
  InverseNeighborDiscoverySolicitation: 141,
  InverseNeighborDiscoveryAdvertisement: 142,
  HomeAgentAddressDiscoveryRequest: 144,
  HomeAgentAddressDiscoveryReply: 145,
  MobilePrefixSolicitation: 146,
  MobilePrefixAdvertisement: 147,
  DuplicateAddressRequestCodeSuffix: 157,
  DuplicateAddressConfirmationCodeSuffix: 158,
  ExtendedEchoRequest: 160,
  ExtendedEchoReply: 161,
};

/** Cilium icmps: [{fields: [{type, family}]}]; family defaults to IPv4. */
export function compileIcmps(v: unknown, where: string): IcmpEntry[] {
  if (!Array.isArray(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a list of {fields: [{type, family}]}`);
  const out: IcmpEntry[] = [];
  v.forEach((ir: unknown, i: number) => {
    const fields = (ir as Record<string, unknown> | null)?.fields;
    if (!Array.isArray(fields)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}[${i}].fields: expected a list of {type, family}`);
    fields.forEach((f: unknown, j: number) => {
      const w = `${where}[${i}].fields[${j}]`;
      const o = (f ?? {}) as Record<string, unknown>;
      const fam = o.family === undefined || o.family === null || o.family === '' ? 'IPv4' : String(o.family);
      if (fam !== 'IPv4' && fam !== 'IPv6') throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.family: "${fam}" is not IPv4 or IPv6`);
      const names = fam === 'IPv4' ? ICMP4_TYPES : ICMP6_TYPES;
      let type: number | undefined;
      if (typeof o.type === 'number') type = o.type;
      else if (typeof o.type === 'string') type = /^\d+$/.test(o.type) ? Number(o.type) : names[o.type];
      if (type === undefined || !Number.isInteger(type) || type < 0 || type > 255) {
        throw new VerdictError(
          'VERDICT_POLICY_INVALID',
          `${w}.type: "${String(o.type)}" is not an ${fam} ICMP type (0-255 or a name such as ${fam === 'IPv4' ? 'EchoRequest' : 'EchoRequest, NeighborSolicitation'})`,
        );
      }
      out.push({ proto: fam === 'IPv4' ? PROTO.ICMPv4 : PROTO.ICMPv6, type });
    });
  });
  return out;
}
