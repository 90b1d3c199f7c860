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
