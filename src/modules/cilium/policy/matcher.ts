import { L7FlowType, TrafficDirection, Verdict, type Endpoint, type Flow, type Policy as FlowPolicy } from '../../../gen/flow/flow.js';
import type { Attribution } from './attribution.js';
import { isReplyOrLaterPacket } from './connection.js';
import { httpRequestFrom } from './l7.js';
import { decisionAllows, policyId, POLICY_KINDS, sortedUnique, type Decision, type L7Request, type Policy } from './policy.js';
import { PROTO, type FlowL4, type NamedPorts } from './ports.js';

// What a dropped (or, simulated, any) flow means: which policies are
// responsible and why. Written once for both the indexed engine (engine.ts)
// and the linear reference matcher (linear.ts), which differ only in how they
// find the decision for a flow, so that the tests can compare them.

export interface EngineOptions {
  /**
   * Namespaces this agent owns: only policies in these namespaces may raise
   * alerts for it. Empty or absent: every namespace. (The original routed
   * alerts by a label anyone could put on a policy.)
   */
  alertNamespaces?: readonly string[];
  /** Whether clusterwide policies may raise alerts (default true). */
  alertClusterwide?: boolean;
  /** Container port names to numbers, for policies that name ports. */
  namedPorts?: Readonly<Record<string, readonly number[]>>;
  /** Bound of each cache (endpoints, decisions per endpoint). */
  cacheSize?: number;
  /**
   * simulate() only: traffic from the local host (reserved:host) into an
   * endpoint passes unless a deny rule matches it, as Cilium's
   * `allow-localhost=always` (its default in Kubernetes: kubelet probes) does.
   * Default true; false for clusters run with `allow-localhost=policy`.
   * attribute() always follows the drop Cilium reported.
   */
  allowLocalhost?: boolean;
}

export const REASON_POLICY_DENIED = 133;
export const REASON_POLICY_DENY = 181;
const EVENT_DROP = 1;

export type Dir = 0 | 1; // ingress, egress
const DIR_NAMES = ['ingress', 'egress'] as const;
const REASON_NAMES = { deny: 'POLICY_DENY', default: 'POLICY_DENIED' } as const;

function freezeAttr(direction: Dir, reason: 'deny' | 'default', responsible: readonly Policy[], alertable: (p: Policy) => boolean, l7 = false): Attribution {
  const all = responsible.map((p) => p.ref);
  const policies = responsible.filter(alertable).map((p) => p.ref);
  const a: Attribution = { direction: DIR_NAMES[direction], reason: REASON_NAMES[reason], policies, responsible: all };
  if (l7) a.l7 = true;
  Object.freeze(policies);
  Object.freeze(all);
  return Object.freeze(a);
}

/** A decision with the attributions derived from it, built on first use. */
export interface Cached {
  readonly d: Decision;
  deny?: Attribution;
  dflt?: Attribution | null;
}

/** The drop reason code of a flow, from the field that newer and older Hubbles fill. */
export function dropReasonOf(flow: Flow): number {
  if (flow.drop_reason_desc) return flow.drop_reason_desc;
  if (flow.drop_reason) return flow.drop_reason;
  return flow.event_type?.type === EVENT_DROP ? flow.event_type.sub_type : 0;
}

function l7RequestOf(flow: Flow): L7Request {
  const r = flow.l7?.record;
  if (!r) return null;
  if (r.$case === 'http') return { kind: 'http', req: httpRequestFrom(r.value.method, r.value.url, r.value.headers) };
  if (r.$case === 'dns') return { kind: 'dns', query: r.value.query };
  // Kafka rules also match on the client ID, which Hubble's record lacks: judged as
  // a flow to the port, so only a port no rule opens is blamed, never a Kafka rule.
  return null;
}

/** The node's own host endpoint (reserved identity 1), which Cilium's allow-localhost admits. */
function isLocalHost(ep: Endpoint | undefined): boolean {
  if (ep === undefined) return false;
  return ep.identity === 1 || ep.labels.includes('reserved:host');
}

function flowPolicyName(p: FlowPolicy): { kind: string; namespace: string; name: string } {
  let { kind, namespace, name } = p;
  for (const l of p.labels) {
    const eq = l.indexOf('=');
    if (eq < 0) continue;
    const k = l.slice(0, eq).replace(/^k8s:/, '');
    const v = l.slice(eq + 1);
    if (k === 'io.cilium.k8s.policy.derived-from' && !kind) kind = v;
    else if (k === 'io.cilium.k8s.policy.name' && !name) name = v;
    else if (k === 'io.cilium.k8s.policy.namespace' && !namespace) namespace = v;
  }
  return { kind, namespace, name };
}

/**
 * Attribution logic shared by the indexed engine and the linear reference
 * matcher; they differ only in how they find the decision for a flow.
 */
export abstract class Matcher {
  protected readonly policies: readonly Policy[];
  protected readonly named: NamedPorts | undefined;
  private readonly byId = new Map<string, Policy>();
  protected readonly alertable: (p: Policy) => boolean;
  protected readonly l4: FlowL4 = { proto: PROTO.none, port: 0 };
  private readonly allowLocalhost: boolean;

  constructor(policies: readonly Policy[], opts: EngineOptions = {}) {
    // The last definition of a kind/namespace/name wins, as an update would.
    for (const p of policies) this.byId.set(policyId(p), p);
    this.policies = [...this.byId.values()];
    this.named = opts.namedPorts ? new Map(Object.entries(opts.namedPorts)) : undefined;
    const nss = opts.alertNamespaces && opts.alertNamespaces.length > 0 ? new Set(opts.alertNamespaces) : null;
    const cw = opts.alertClusterwide ?? true;
    this.alertable = (p) => p.alert && (p.namespace === '' ? cw : nss === null || nss.has(p.namespace));
    this.allowLocalhost = opts.allowLocalhost ?? true;
  }

  get size(): number {
    return this.policies.length;
  }

  /** The policies in force (after de-duplication). */
  list(): readonly Policy[] {
    return this.policies;
  }

  protected abstract decision(flow: Flow, dir: Dir): Cached;

  /**
   * For a dropped flow (POLICY_DENY, POLICY_DENIED, a policy name in
   * *_denied_by, or a request refused by L7 rules): the responsible policies
   * that may raise alerts, or null when none (including when the policies
   * loaded here allow the flow). AUDIT verdicts (policy audit mode: Cilium
   * would have dropped the flow, and reports it without a drop reason) are
   * judged against the loaded policies: explicit deny when a deny rule
   * matches, else default deny.
   */
  attribute(flow: Flow): Attribution | null {
    if (flow.verdict !== Verdict.DROPPED && flow.verdict !== Verdict.AUDIT) return null;
    const code = dropReasonOf(flow);
    const inNamed = flow.ingress_denied_by.length > 0;
    const egNamed = flow.egress_denied_by.length > 0;
    // A proxy refusing a request shows as a DROPPED L7 flow, without a drop reason or
    // (newer Hubbles) with POLICY_DENIED; either way only the L7 rules can explain it, as
    // the port itself is open to the proxy. (Responses travel the other way and carry
    // the same request: only requests count.)
    const l7Request = flow.l7?.record !== undefined && flow.l7.type !== L7FlowType.RESPONSE;
    let kind: 'deny' | 'default' | 'l7' | 'audit';
    if (code === REASON_POLICY_DENY || inNamed || egNamed) kind = 'deny';
    else if (l7Request && (code === 0 || code === REASON_POLICY_DENIED) && flow.verdict === Verdict.DROPPED) kind = 'l7';
    else if (code === REASON_POLICY_DENIED) kind = 'default';
    else if (code === 0 && flow.verdict === Verdict.AUDIT) kind = 'audit';
    else return null;
    const td = flow.traffic_direction;
    if (td === TrafficDirection.INGRESS || (td !== TrafficDirection.EGRESS && inNamed)) return this.attributeDir(flow, 0, kind);
    if (td === TrafficDirection.EGRESS || egNamed) return this.attributeDir(flow, 1, kind);
    // Direction unknown: the packet meets the sender's egress first.
    return this.attributeDir(flow, 1, kind) ?? this.attributeDir(flow, 0, kind);
  }

  private attributeDir(flow: Flow, dir: Dir, kind: 'deny' | 'default' | 'l7' | 'audit'): Attribution | null {
    if (kind === 'audit') {
      const a = this.judgeDir(flow, dir, false);
      return a !== null && a.policies.length > 0 ? a : null;
    }
    const c = this.decision(flow, dir);
    const d = c.d;
    if (kind === 'deny') {
      const named = dir === 0 ? flow.ingress_denied_by : flow.egress_denied_by;
      let a: Attribution;
      if (named.length === 0) {
        a = c.deny ??= freezeAttr(dir, 'deny', d.denyPolicies, this.alertable);
      } else {
        // Cilium named the policies; trust its names for the ones loaded here as well.
        const extra: Policy[] = [];
        for (const n of named) {
          const p = this.lookup(n);
          if (p) extra.push(p);
        }
        a = freezeAttr(dir, 'deny', sortedUnique([...d.denyPolicies, ...extra]), this.alertable);
      }
      return a.policies.length > 0 ? a : null;
    }
    if (kind === 'default') {
      if (c.dflt === undefined) {
        c.dflt = d.defaultDeny && !decisionAllows(d, null) ? freezeAttr(dir, 'default', d.defaultDenyPolicies, this.alertable) : null;
      }
      return c.dflt !== null && c.dflt.policies.length > 0 ? c.dflt : null;
    }
    const req = l7RequestOf(flow);
    if (decisionAllows(d, req)) return null;
    const a = this.l7Attribution(d, dir);
    return a.policies.length > 0 ? a : null;
  }

  private l7Attribution(d: Decision, dir: Dir): Attribution {
    // The policies whose L7 rules cover this peer and port refused the request.
    if (d.l7.length > 0) return freezeAttr(dir, 'default', sortedUnique(d.l7.map((x) => x.policy)), this.alertable, true);
    return freezeAttr(dir, 'default', d.defaultDenyPolicies, this.alertable);
  }

  private lookup(n: FlowPolicy): Policy | undefined {
    const { kind, namespace, name } = flowPolicyName(n);
    if (kind) return this.byId.get(policyId({ kind, namespace: kind === 'CiliumClusterwideNetworkPolicy' ? '' : namespace, name }));
    for (const k of POLICY_KINDS) {
      const p = this.byId.get(policyId({ kind: k, namespace: k === 'CiliumClusterwideNetworkPolicy' ? '' : namespace, name }));
      if (p) return p;
    }
    return undefined;
  }

  /**
   * Evaluates any flow as if the loaded policies were enforced: the
   * attribution when they would deny it (`policies` may then be empty when no
   * responsible policy may alert; `responsible` lists them all), else null.
   * Replies and later packets of a connection are skipped (connection tracking
   * lets them through; see connection.ts), and so are L7 responses; L7
   * requests are judged against L7 rules only (their connection was judged when
   * it opened). With no direction, the sender's egress is checked, then the
   * receiver's ingress. Traffic from the local host into an endpoint is only
   * subject to deny rules (see EngineOptions.allowLocalhost).
   */
  simulate(flow: Flow): Attribution | null {
    if (isReplyOrLaterPacket(flow)) return null;
    const td = flow.traffic_direction;
    // An L7 record is the proxy's account of a request on a connection Cilium already
    // judged at L3/L4 when it opened, and it names the peer as the proxy resolved it
    // (often identity 2, world, for a pod): only L7 rules can refuse it.
    const judge = flow.l7 !== undefined ? (dir: Dir) => this.judgeL7Dir(flow, dir) : (dir: Dir) => this.judgeDir(flow, dir, this.allowLocalhost);
    if (td === TrafficDirection.INGRESS) return judge(0);
    if (td === TrafficDirection.EGRESS) return judge(1);
    return judge(1) ?? judge(0);
  }

  /** Whether L7 rules covering the flow's peer and port refuse its request. */
  private judgeL7Dir(flow: Flow, dir: Dir): Attribution | null {
    const d = this.decision(flow, dir).d;
    const req = l7RequestOf(flow);
    if (req === null || d.l7.length === 0 || decisionAllows(d, req)) return null;
    return this.l7Attribution(d, dir);
  }

  /** Whether the loaded policies deny the flow in one direction, and who is responsible. */
  private judgeDir(flow: Flow, dir: Dir, allowLocalhost: boolean): Attribution | null {
    const c = this.decision(flow, dir);
    const d = c.d;
    if (d.denyPolicies.length > 0) return (c.deny ??= freezeAttr(dir, 'deny', d.denyPolicies, this.alertable));
    if (allowLocalhost && dir === 0 && isLocalHost(flow.source)) return null;
    const req = l7RequestOf(flow);
    if (decisionAllows(d, req)) return null;
    if (req !== null && d.l7.length > 0) return this.l7Attribution(d, dir);
    return (c.dflt ??= freezeAttr(dir, 'default', d.defaultDenyPolicies, this.alertable));
  }
}
