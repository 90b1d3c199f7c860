import type { Endpoint, Flow } from '../../gen/flow/flow.js';
import { fingerprint } from '../../shared/alert/fingerprint.js';
import { ALERT_SCHEMA, type AlertPayload, type EndpointSummary, type Severity } from '../../shared/alert/payload.js';
import type { Attribution } from './policy/attribution.js';
import { l7Details, l7FingerprintPart, l7Summary } from './l7-details.js';
import { endpointName, identityName } from './endpoint-name.js';

// Turns a dropped flow and the policies responsible for it into an alert.

/** Severity by why the flow was dropped; documented in alerts/README.md. */
export const CILIUM_SEVERITY: Record<Attribution['reason'], Severity> = {
  POLICY_DENY: 'high', // someone wrote a rule to forbid exactly this
  POLICY_DENIED: 'medium', // nothing allowed it
};

function ports(flow: Flow): { protocol: string; src: number; dst: number; icmp?: { type: number; code: number } } {
  const p = flow.l4?.protocol;
  if (!p) return { protocol: '', src: 0, dst: 0 };
  if (p.$case === 'ICMPv4' || p.$case === 'ICMPv6') return { protocol: p.$case, src: 0, dst: 0, icmp: { type: p.value.type, code: p.value.code } };
  return { protocol: p.$case, src: p.value.source_port, dst: p.value.destination_port };
}

function endpoint(e: Endpoint | undefined, ip: string, port: number, names: string[]): EndpointSummary {
  const w = e?.workloads?.[0];
  return {
    namespace: e?.namespace ?? '',
    pod: e?.pod_name ?? '',
    ip,
    port,
    identity: e?.identity ?? 0,
    labels: e?.labels ?? [],
    workload: w ? `${w.kind}/${w.name}` : '',
    names,
  };
}

/**
 * Who a side is for the fingerprint, stable across pod restarts and replicas:
 * workload, else pod, else what its identity's labels say (one node address
 * carries the traffic of many senders), else DNS name or IP.
 */
function who(e: Endpoint | undefined, ip: string, names: readonly string[] | undefined): string {
  const w = e?.workloads?.[0];
  if (w) return `${e!.namespace}/${w.kind}/${w.name}`;
  if (e?.pod_name) return `${e.namespace}/${e.pod_name}`;
  return identityName(e) ?? names?.[0] ?? ip;
}

/** A name followed by the address, unless the name starts with it already. */
function withAddress(name: string, ip: string): string {
  return !ip || name.startsWith(ip) ? name : `${name} (${ip})`;
}

// Flows of a burst share their millisecond: its text is built once.
let lastMs = Number.NaN;
let lastTime = '';

/** The flow's time as an alert's first_seen/last_seen (RFC 3339, milliseconds, UTC). */
export function flowTime(flow: Flow): string {
  const t = flow.time;
  if (!t) return new Date().toISOString();
  const ms = t.seconds * 1000 + Math.floor(t.nanos / 1e6);
  if (ms !== lastMs) {
    lastTime = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastTime;
}

/**
 * What makes two drops the same alert. Leaves out what changes per
 * connection: source port, time, TCP flags. Computed from the flow without
 * the alert, so a repeat of an alert already staged costs no more (see
 * Staging.bump). The digest of its parts as text: flowFingerprint gives the
 * same without building the text for a flow it has seen the like of.
 */
export function flowFingerprintOf(flow: Flow, att: Attribution, cluster: string): string {
  const parts = ['cilium', cluster, att.direction, att.reason];
  for (const pr of att.policies) parts.push(`${pr.kind}/${pr.namespace}/${pr.name}`);
  const p = flow.l4?.protocol;
  const icmp = p && (p.$case === 'ICMPv4' || p.$case === 'ICMPv6');
  parts.push(
    who(flow.source, flow.IP?.source ?? '', flow.source_names),
    who(flow.destination, flow.IP?.destination ?? '', flow.destination_names),
    p ? p.$case : '',
    p && !icmp ? String(p.value.destination_port) : '0',
    icmp ? `${p.value.type}/${p.value.code}` : '',
    flow.l7?.record ? l7FingerprintPart(l7Details(flow)) : '',
  );
  return fingerprint(parts);
}

// The fingerprints of the flows seen lately, by what their text is made of:
// the attribution (the engine shares one frozen object between the flows it
// judges alike), the cluster, and the flow's own fields, compared as they
// are (its strings, not a text built of them). A repeat costs a hash of a few
// strings and their comparison; a new one its text and digest, as before, so
// the fingerprint is the same. Bounded, and forgotten whole when full.
const FP_MAX = 4096;
const FP_CHAIN_MAX = 8;
interface FpEntry {
  key: unknown[];
  hex: string;
  next: FpEntry | undefined;
}
const fpKnown = new Map<number, FpEntry>();
let fpSize = 0;
/** What the fingerprint of the flow at hand is made of, and how many of it; its hash. */
const fpKey: unknown[] = [];
let fpLen = 0;
let fpHash = 0;
/** A number per attribution object, for the hash. */
const attIds = new WeakMap<Attribution, number>();
let nextAttId = 1;

/**
 * A string as a key part. The hash takes its length and two of its characters
 * (the last, where replicas' pod names differ, and the middle) rather than all
 * of them: the key is compared whole on a hit anyway, so a hash shared by two
 * keys costs a comparison, never a wrong fingerprint.
 */
function keyString(s: string): void {
  fpKey[fpLen++] = s;
  const n = s.length;
  fpHash = Math.imul(Math.imul(fpHash ^ n, 0x01000193) ^ (n === 0 ? 0 : s.charCodeAt(n - 1) * 65536 + s.charCodeAt(n >> 1)), 0x01000193);
}

function keyValue(v: unknown, n: number): void {
  fpKey[fpLen++] = v;
  fpHash = Math.imul(fpHash ^ n, 0x01000193);
}

/** who() as key parts: which of its four forms, and the strings it is made of. */
function keyWho(e: Endpoint | undefined, ip: string, names: readonly string[] | undefined): void {
  const w = e?.workloads?.[0];
  if (w) {
    keyValue(1, 1);
    keyString(e!.namespace);
    keyString(w.kind);
    keyString(w.name);
  } else if (e?.pod_name) {
    keyValue(2, 2);
    keyString(e.namespace);
    keyString(e.pod_name);
  } else {
    const named = identityName(e);
    keyValue(named === undefined ? 3 : 4, named === undefined ? 3 : 4);
    keyString(named ?? names?.[0] ?? ip);
  }
}

/** flowFingerprintOf(), remembered by the flow's fields rather than its text. */
export function flowFingerprint(flow: Flow, att: Attribution, cluster: string): string {
  fpLen = 0;
  fpHash = 0x811c9dc5;
  let id = attIds.get(att);
  if (id === undefined) attIds.set(att, (id = nextAttId++));
  keyValue(att, id);
  keyString(cluster);
  keyWho(flow.source, flow.IP?.source ?? '', flow.source_names);
  keyWho(flow.destination, flow.IP?.destination ?? '', flow.destination_names);
  const p = flow.l4?.protocol;
  if (!p) keyValue(0, 0);
  else {
    keyString(p.$case);
    if (p.$case === 'ICMPv4' || p.$case === 'ICMPv6') {
      keyValue(p.value.type, p.value.type);
      keyValue(p.value.code, p.value.code);
    } else keyValue(p.value.destination_port, p.value.destination_port);
  }
  if (flow.l7?.record) keyString(l7FingerprintPart(l7Details(flow)));
  else keyValue(undefined, 0);
  const slot = fpHash & 0x3fffffff;
  const first = fpKnown.get(slot);
  let depth = 0;
  for (let e = first; e !== undefined; e = e.next) {
    const k = e.key;
    depth++;
    if (k.length !== fpLen) continue;
    let i = 0;
    while (i < fpLen && k[i] === fpKey[i]) i++;
    if (i === fpLen) return e.hex;
  }
  const hex = flowFingerprintOf(flow, att, cluster);
  // Names alike in length and in the characters hashed share a slot: a long chain is not added to (the text's digest is remembered too).
  if (depth >= FP_CHAIN_MAX) return hex;
  if (fpSize >= FP_MAX) {
    fpKnown.clear();
    fpSize = 0;
  }
  fpKnown.set(slot, { key: fpKey.slice(0, fpLen), hex, next: fpSize === 0 ? undefined : first });
  fpSize++;
  return hex;
}

/** `fp` may be given by a caller that has the flow's fingerprint already (the agent looks repeats up by it). */
export function flowToAlert(flow: Flow, att: Attribution, cluster: string, sample: unknown, fp = flowFingerprint(flow, att, cluster)): AlertPayload {
  const p = ports(flow);
  const src = endpoint(flow.source, flow.IP?.source ?? '', p.src, flow.source_names ?? []);
  const dst = endpoint(flow.destination, flow.IP?.destination ?? '', p.dst, flow.destination_names ?? []);
  // The side the policy protects owns the alert: the destination for ingress, the source for egress.
  const subject = att.direction === 'ingress' ? dst : src;
  const l7 = l7Details(flow);
  const request = l7Summary(l7);
  const policyNames = att.policies.map((pr) => (pr.namespace ? `${pr.namespace}/${pr.name}` : pr.name)).join(', ');
  const whoSrc = endpointName(flow.source, src.ip, src.names);
  const whoDst = endpointName(flow.destination, dst.ip, dst.names);
  const target = `${whoDst}${p.dst ? `:${p.dst}` : ''}${p.protocol ? `/${p.protocol}` : ''}`;
  const verb = att.reason === 'POLICY_DENY' ? 'denied' : 'not allowed';
  const t = flowTime(flow);
  return {
    schema: ALERT_SCHEMA,
    source: 'cilium',
    fingerprint: fp,
    severity: CILIUM_SEVERITY[att.reason],
    title: `${att.direction === 'ingress' ? 'Ingress' : 'Egress'} ${verb}: ${whoSrc} -> ${target}`.slice(0, 200),
    description: `${att.reason === 'POLICY_DENY' ? 'Denied by' : att.l7 ? 'Refused by the L7 rules of' : 'Dropped by default deny of'} ${policyNames}. ${att.direction} ${withAddress(whoSrc, src.ip)} -> ${withAddress(target, dst.ip)}${request ? ` ${request}` : ''}, drop reason ${att.reason}.`,
    cluster,
    namespace: subject.namespace,
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: att.policies,
    rule: '',
    labels: {
      direction: att.direction,
      source_pod: src.pod,
      destination_pod: dst.pod,
      source_namespace: src.namespace,
      destination_namespace: dst.namespace,
      node: flow.node_name,
    },
    cilium: {
      direction: att.direction,
      reason: att.reason,
      drop_reason: flow.drop_reason_desc || flow.drop_reason,
      protocol: p.protocol,
      source: src,
      destination: dst,
      node: flow.node_name,
      ...l7,
      ...(p.icmp ? { icmp: p.icmp } : {}),
    },
    samples: [sample],
  };
}
