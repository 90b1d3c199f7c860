import { comparePolicyRefs, type PolicyRef } from '../../../shared/alert/payload.js';
import { cidrRuleMatches, type CidrRule, type IpAddr } from './cidr.js';
import { ENTITY, WORLD_BITS, type LabelSet } from './labels.js';
import { httpRuleMatches, nameMatches, type HttpRequest, type NameMatcher } from './l7.js';
import { icmpMatches, PortMatch, portEntryMatches, type FlowL4, type L4Matcher, type L7Rules, type NamedPorts } from './ports.js';
import type { Selector } from './selector.js';

// The compiled policy model shared by the indexed engine and the linear
// reference matcher, and the one evaluation both use, so that the index and
// the caches are the only thing that differs between them.

export type PolicyKind = 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy' | 'NetworkPolicy';
export const POLICY_KINDS: readonly PolicyKind[] = ['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'NetworkPolicy'];

/** The opt-in annotation of the original GitLab integration. */
export const ALERT_ANNOTATION = 'app.gitlab.com/alert';

export interface ServiceRef {
  readonly name: string;
  readonly namespace: string;
}

/** Who a rule talks to. Fields are OR-ed; `wildcard` is every peer. */
export interface Peer {
  readonly wildcard: boolean;
  readonly endpoints: readonly Selector[];
  readonly nodes: readonly Selector[];
  readonly entities: number;
  readonly cidrs: readonly CidrRule[];
  readonly fqdns: readonly NameMatcher[];
  readonly services: readonly ServiceRef[];
}

/** A peer and the ports it may use (null: every protocol and port). */
export interface PeerRule {
  readonly peer: Peer;
  readonly l4: L4Matcher | null;
}

export interface Section {
  readonly allows: readonly PeerRule[];
  readonly denies: readonly PeerRule[];
  /** fromRequires / toRequires: every allowed peer of the subject must also match these. */
  readonly requires: readonly Selector[];
  /** The rule puts its subjects in default deny for this direction. */
  readonly defaultDeny: boolean;
}

export interface Rule {
  /** endpointSelector / podSelector, scoped to the policy namespace; null with a nodeSelector. */
  readonly subject: Selector | null;
  /** nodeSelector (clusterwide only): selects the host endpoint. */
  readonly nodeSubject: Selector | null;
  readonly ingress: Section | null;
  readonly egress: Section | null;
}

export interface Policy {
  readonly kind: PolicyKind;
  /** "" for clusterwide */
  readonly namespace: string;
  readonly name: string;
  readonly ref: PolicyRef;
  /** Annotated app.gitlab.com/alert: "true" */
  readonly alert: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** File path, manifest path, or `k8s:` + API path it came from. */
  readonly source: string;
  /** 1-based line of its document in `source`, when read from a file. */
  readonly line?: number;
  readonly rules: readonly Rule[];
  /** Parts of the policy the engine evaluates approximately (see docs/policy-engine.md). */
  readonly warnings: readonly string[];
  readonly resourceVersion?: string;
}

export function policyId(p: { kind: string; namespace: string; name: string }): string {
  return p.namespace === '' ? `${p.kind}/${p.name}` : `${p.kind}/${p.namespace}/${p.name}`;
}

/** An endpoint as policies see it. Address, names and service only matter for peers outside the cluster. */
export interface EndpointView {
  readonly id: number;
  readonly labels: LabelSet;
  readonly flags: number;
  readonly ns: string;
  readonly ip: IpAddr | null;
  readonly names: readonly string[];
  readonly service: ServiceRef | null;
}

/** Endpoints an endpointSelector can select: pods (and Cilium's own health/init endpoints). */
export function canBeSubject(v: EndpointView): boolean {
  return (v.flags & ENTITY.cluster) !== 0 && (v.flags & (ENTITY.host | ENTITY.remoteNode | ENTITY.kubeApiserver | ENTITY.unmanaged)) === 0;
}

export function ruleSelects(r: Rule, v: EndpointView): boolean {
  if (r.subject) return canBeSubject(v) && r.subject.matches(v.labels);
  if (r.nodeSubject) return (v.flags & ENTITY.host) !== 0 && r.nodeSubject.matches(v.labels);
  return false;
}

export function peerMatches(p: Peer, v: EndpointView): boolean {
  if (p.wildcard || (p.entities & v.flags) !== 0) return true;
  for (const s of p.endpoints) if (s.matches(v.labels)) return true;
  if (p.nodes.length > 0 && (v.flags & (ENTITY.host | ENTITY.remoteNode)) !== 0) {
    for (const s of p.nodes) if (s.matches(v.labels)) return true;
  }
  // CIDR and FQDN rules select addresses outside the cluster, as in Cilium.
  if ((v.flags & WORLD_BITS) !== 0) {
    if (v.ip !== null) for (const c of p.cidrs) if (cidrRuleMatches(c, v.ip)) return true;
    if (v.names.length > 0) for (const f of p.fqdns) for (const n of v.names) if (nameMatches(f, n)) return true;
  }
  if (v.service !== null) {
    for (const s of p.services) if (s.name === v.service.name && (s.namespace === '' || s.namespace === v.service.namespace)) return true;
  }
  return false;
}

/**
 * 0: no; 1: yes at L4 with no L7 rule; otherwise the L7 rules that then apply
 * (written into `l7`). Named ports the engine cannot resolve count as a match
 * for allows and as no match for denies: never blame a policy on a guess.
 */
function l4Match(m: L4Matcher | null, fl: FlowL4, named: NamedPorts | undefined, deny: boolean, l7: L7Rules[] | null): number {
  if (m === null) return 1;
  let found = 0;
  for (const e of m.ports) {
    const r = portEntryMatches(e, fl.proto, fl.port, named);
    if (r === PortMatch.No || (deny && r === PortMatch.Unknown)) continue;
    if (e.l7 === null || deny) return 1;
    if (l7) l7.push(e.l7);
    found = 2;
  }
  for (const e of m.icmps) if (icmpMatches(e, fl.proto, fl.port)) return 1;
  return found;
}

export interface SectionRef {
  readonly policy: Policy;
  readonly section: Section;
}

/** The rules that select one endpoint in one direction, in policy order. */
export interface Selection {
  readonly sections: readonly SectionRef[];
  readonly requires: readonly Selector[];
  readonly defaultDeny: boolean;
  /** Policies whose rules put the endpoint in default deny, sorted and unique. */
  readonly defaultDenyPolicies: readonly Policy[];
}

export const EMPTY_SELECTION: Selection = Object.freeze({ sections: [], requires: [], defaultDeny: false, defaultDenyPolicies: [] });

/** Policies order as their refs do (kind, namespace, name): one order for the engine and the alert payload. */
export const comparePolicies: (a: Policy, b: Policy) => number = comparePolicyRefs;

export function sortedUnique(ps: Iterable<Policy>): Policy[] {
  return [...new Set(ps)].sort(comparePolicies);
}

export function makeSelection(sections: SectionRef[]): Selection {
  if (sections.length === 0) return EMPTY_SELECTION;
  const requires: Selector[] = [];
  const dd: Policy[] = [];
  for (const s of sections) {
    requires.push(...s.section.requires);
    if (s.section.defaultDeny) dd.push(s.policy);
  }
  return { sections, requires, defaultDeny: dd.length > 0, defaultDenyPolicies: sortedUnique(dd) };
}

export interface L7Allow {
  readonly policy: Policy;
  readonly rules: L7Rules;
}

/** What the policies selecting one endpoint say about one peer, protocol and port. */
export interface Decision {
  /** Some rule selects the endpoint in this direction. */
  readonly enforced: boolean;
  readonly denyPolicies: readonly Policy[];
  readonly defaultDeny: boolean;
  readonly defaultDenyPolicies: readonly Policy[];
  /** An allow rule permits the flow at L3/L4 with no L7 condition. */
  readonly allowed: boolean;
  /** Allow rules that permit the port only for requests their L7 rules accept. */
  readonly l7: readonly L7Allow[];
}

export function decide(sel: Selection, peer: EndpointView, fl: FlowL4, named: NamedPorts | undefined): Decision {
  if (sel.sections.length === 0) {
    return { enforced: false, denyPolicies: [], defaultDeny: false, defaultDenyPolicies: [], allowed: true, l7: [] };
  }
  const deny: Policy[] = [];
  let allowed = false;
  const l7: L7Allow[] = [];
  let requiresOk = true;
  for (const r of sel.requires) {
    if (!r.matches(peer.labels)) {
      requiresOk = false;
      break;
    }
  }
  const scratch: L7Rules[] = [];
  for (const { policy, section } of sel.sections) {
    for (const d of section.denies) {
      if (peerMatches(d.peer, peer) && l4Match(d.l4, fl, named, true, null) === 1) {
        deny.push(policy);
        break;
      }
    }
    if (allowed || !requiresOk) continue;
    for (const a of section.allows) {
      if (!peerMatches(a.peer, peer)) continue;
      scratch.length = 0;
      const m = l4Match(a.l4, fl, named, false, scratch);
      if (m === 1) {
        allowed = true;
        break;
      }
      if (m === 2) for (const rules of scratch) l7.push({ policy, rules });
    }
  }
  return {
    enforced: true,
    denyPolicies: sortedUnique(deny),
    defaultDeny: sel.defaultDeny,
    defaultDenyPolicies: sel.defaultDenyPolicies,
    allowed: allowed || !sel.defaultDeny,
    l7: allowed ? [] : l7,
  };
}

/** L7 facts of a flow, when Hubble saw the request. */
export type L7Request = { kind: 'http'; req: HttpRequest } | { kind: 'dns'; query: string } | null;

function l7RulesAllow(rules: L7Rules, r: NonNullable<L7Request>): boolean {
  if (rules.opaque) return true;
  if (r.kind === 'http') return rules.http?.some((h) => httpRuleMatches(h, r.req)) ?? false;
  return rules.dns?.some((m) => nameMatches(m, r.query)) ?? false;
}

/** Whether the flow passes, given its L7 request (null: an L4 flow, which the proxy port admits). */
export function decisionAllows(d: Decision, req: L7Request): boolean {
  if (d.allowed) return true;
  if (d.l7.length === 0) return false;
  if (req === null) return true;
  return d.l7.some((a) => l7RulesAllow(a.rules, req));
}
