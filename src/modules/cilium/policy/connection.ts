import { L7FlowType, type Flow } from '../../../gen/flow/flow.js';

// Cilium judges a connection by the packet that opens it; connection tracking
// lets the rest of it through, both ways. Judging a later packet as if it
// opened a connection (a SYN+ACK, an ACK, a FIN, an echo reply) blames
// policies for traffic they never see, so simulation skips these. Hubble does
// not always set is_reply (older versions, some observation points), so the
// TCP flags and ICMP types are read too.

const ICMPV4_ECHO_REPLY = 0;
const ICMPV6_ECHO_REPLY = 129;

/** Whether a flow is a reply or a later packet of a connection, rather than one that may open it. */
export function isReplyOrLaterPacket(flow: Flow): boolean {
  if (flow.is_reply === true) return true;
  if (flow.l7 !== undefined && flow.l7.type === L7FlowType.RESPONSE) return true;
  const p = flow.l4?.protocol;
  if (p === undefined) return false;
  if (p.$case === 'TCP') {
    const f = p.value.flags;
    // Without flags (L7 records carry none) nothing says it is not an opening.
    if (f === undefined) return false;
    return !(f.SYN && !f.ACK);
  }
  if (p.$case === 'ICMPv4') return p.value.type === ICMPV4_ECHO_REPLY;
  if (p.$case === 'ICMPv6') return p.value.type === ICMPV6_ECHO_REPLY;
  return false;
}

/** How many connection openings are remembered; forgotten whole when full. */
const OPENINGS_MAX = 65_536;

/**
 * Connection openings already judged. Hubble reports one packet at several
 * observation points (the policy verdict, the trace to the proxy or to the
 * endpoint), and a SYN again when it is retransmitted; Cilium decides the
 * connection once. Keyed by protocol, addresses, ports and direction (the
 * egress of the sender and the ingress of the receiver are separate
 * decisions); a FIN or RST ends it, so a later connection on the same ports
 * counts again. ICMP and L7 records (one per request) are not connections
 * here: always new.
 */
export class ConnectionOpenings {
  private readonly seen = new Set<string>();

  /** Whether the flow opens a connection not seen before (and remembers it). */
  first(flow: Flow): boolean {
    if (flow.l7 !== undefined) return true;
    const key = openingKey(flow, false);
    if (key === undefined) return true;
    if (this.seen.has(key)) return false;
    if (this.seen.size >= OPENINGS_MAX) this.seen.clear();
    this.seen.add(key);
    return true;
  }

  /** Forgets the connection a FIN or RST (either way, any observation point) ends. */
  ended(flow: Flow): void {
    const p = flow.l4?.protocol;
    if (p?.$case !== 'TCP' || !(p.value.flags?.FIN || p.value.flags?.RST)) return;
    for (const reverse of [false, true]) {
      const key = openingKey(flow, reverse);
      if (key === undefined) continue;
      const base = key.slice(0, key.lastIndexOf('|'));
      for (const d of [0, 1, 2]) this.seen.delete(`${base}|${d}`);
    }
  }
}

function openingKey(flow: Flow, reverse: boolean): string | undefined {
  const p = flow.l4?.protocol;
  if (p === undefined || (p.$case !== 'TCP' && p.$case !== 'UDP' && p.$case !== 'SCTP')) return undefined;
  const src = `${flow.IP?.source ?? ''}|${p.value.source_port}`;
  const dst = `${flow.IP?.destination ?? ''}|${p.value.destination_port}`;
  return `${p.$case}|${reverse ? dst : src}|${reverse ? src : dst}|${flow.traffic_direction}`;
}
