import { L7FlowType, TrafficDirection, Verdict, type Endpoint, type Flow, type Policy as FlowPolicy, type Service } from '../../../gen/flow/flow.js';
import type { Attribution } from './attribution.js';
import { parseIp } from './cidr.js';
import { httpRequestFrom } from './l7.js';
import { endpointLabelSet, ENTITY, WORLD_BITS } from './labels.js';
import {
  decide,
  decisionAllows,
  makeSelection,
  policyId,
  POLICY_KINDS,
  ruleSelects,
  sortedUnique,
  type Decision,
  type EndpointView,
  type L7Request,
  type Policy,
  type Rule,
  type SectionRef,
  type Selection,
} from './policy.js';
import { flowL4, PROTO, type FlowL4, type NamedPorts } from './ports.js';
import { selectorAnchor } from './selector.js';

// Attribution of dropped flows to the policies responsible.
//
// Cost per flow must not grow with policies that cannot select the flow's
// endpoints, so rules are indexed by namespace and by one label requirement of
// their subject selector; an endpoint looks up only the buckets of its own
// labels. What repeats is cached: an endpoint (by identity, checked against
// its labels) is resolved once, the rules selecting it once per direction, and
// the decision once per (subject, peer, direction, protocol, port). A cache hit
// allocates nothing.

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

type Dir = 0 | 1; // ingress, egress
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
interface Cached {
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
  return { kind: 'dns', query: r.value.query };
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
    let kind: 'deny' | 'default' | 'l7' | 'audit';
    if (code === REASON_POLICY_DENY || inNamed || egNamed) kind = 'deny';
    else if (code === REASON_POLICY_DENIED) kind = 'default';
    else if (code === 0 && flow.verdict === Verdict.AUDIT) kind = 'audit';
    // Envoy refusing a request shows as a DROPPED L7 flow without a drop reason.
    // (Responses travel the other way and carry the same request: only requests count.)
    else if (code === 0 && flow.l7?.record !== undefined && flow.l7.type !== L7FlowType.RESPONSE) kind = 'l7';
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
   * Replies are skipped (connection tracking lets them through), and so are L7
   * responses. With no direction, the sender's egress is checked, then the
   * receiver's ingress. Traffic from the local host into an endpoint is only
   * subject to deny rules (see EngineOptions.allowLocalhost).
   */
  simulate(flow: Flow): Attribution | null {
    if (flow.is_reply === true) return null;
    if (flow.l7 !== undefined && flow.l7.type === L7FlowType.RESPONSE) return null;
    const td = flow.traffic_direction;
    const host = this.allowLocalhost;
    if (td === TrafficDirection.INGRESS) return this.judgeDir(flow, 0, host);
    if (td === TrafficDirection.EGRESS) return this.judgeDir(flow, 1, host);
    return this.judgeDir(flow, 1, host) ?? this.judgeDir(flow, 0, host);
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

interface RuleEntry {
  readonly policy: Policy;
  readonly rule: Rule;
  readonly order: number;
  mark: number;
}

interface NsIndex {
  readonly eq: Map<string, RuleEntry[]>;
  readonly exists: Map<string, RuleEntry[]>;
  readonly rest: RuleEntry[];
}

interface PeerCache {
  readonly key: number;
  readonly c: Cached;
  more: Map<number, Cached> | null;
}

interface EpEntry extends EndpointView {
  readonly raw: readonly string[];
  readonly rawNs: string;
  sel: [Selection | undefined, Selection | undefined];
  /** peer id -> (direction, protocol, port) -> decision */
  readonly dec: Map<number, PeerCache>;
}

const EMPTY: readonly string[] = Object.freeze([]);

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function push<K>(m: Map<K, RuleEntry[]>, k: K, e: RuleEntry): void {
  const l = m.get(k);
  if (l) l.push(e);
  else m.set(k, [e]);
}

export class PolicyEngine extends Matcher {
  private readonly index = new Map<string, NsIndex>();
  private readonly nodeRules: RuleEntry[] = [];
  private readonly hasFqdn: boolean;
  private readonly hasServices: boolean;
  private readonly cacheSize: number;
  private byIdentity = new Map<number, EpEntry>();
  private byKey = new Map<string, EpEntry>();
  /** Endpoints outside the cluster: identity -> address (and names, service) -> entry. */
  private world = new Map<number, Map<string, EpEntry>>();
  private worldSize = 0;
  private nextId = 1;
  private epoch = 0;
  private decisions = 0;
  private ruleChecks = 0;

  constructor(policies: readonly Policy[], opts: EngineOptions = {}) {
    super(policies, opts);
    this.cacheSize = opts.cacheSize ?? 65536;
    let order = 0;
    let fqdn = false;
    let svc = false;
    for (const policy of this.policies) {
      for (const rule of policy.rules) {
        const e: RuleEntry = { policy, rule, order: order++, mark: 0 };
        for (const s of [rule.ingress, rule.egress]) {
          for (const a of s?.allows ?? []) {
            if (a.peer.fqdns.length > 0) fqdn = true;
            if (a.peer.services.length > 0) svc = true;
          }
          for (const a of s?.denies ?? []) {
            if (a.peer.fqdns.length > 0) fqdn = true;
            if (a.peer.services.length > 0) svc = true;
          }
        }
        if (!rule.subject) {
          if (rule.nodeSubject) this.nodeRules.push(e);
          continue;
        }
        let idx = this.index.get(policy.namespace);
        if (!idx) this.index.set(policy.namespace, (idx = { eq: new Map(), exists: new Map(), rest: [] }));
        const anchor = selectorAnchor(rule.subject);
        if (anchor === null) idx.rest.push(e);
        else if (anchor.kind === 'eq') for (const k of anchor.keys) push(idx.eq, k, e);
        else push(idx.exists, anchor.key, e);
      }
    }
    this.hasFqdn = fqdn;
    this.hasServices = svc;
  }

  protected decision(flow: Flow, dir: Dir): Cached {
    const ip = flow.IP;
    let subject: EpEntry;
    let peer: EpEntry;
    if (dir === 0) {
      subject = this.resolve(flow.destination, ip?.destination ?? '', EMPTY, undefined, flow.node_labels);
      peer = this.resolve(flow.source, ip?.source ?? '', flow.source_names, flow.source_service, flow.node_labels);
    } else {
      subject = this.resolve(flow.source, ip?.source ?? '', EMPTY, undefined, flow.node_labels);
      peer = this.resolve(flow.destination, ip?.destination ?? '', flow.destination_names, flow.destination_service, flow.node_labels);
    }
    const l4 = flowL4(flow, this.l4);
    // Per peer, the first (direction, protocol, port) seen gets a slot of its own: most pairs
    // only ever use one port, and integer keys keep the Maps fast and allocation-free.
    const key = dir * 524288 + l4.proto * 65536 + (l4.port & 0xffff);
    const pc = subject.dec.get(peer.id);
    if (pc !== undefined) {
      if (pc.key === key) return pc.c;
      const hit = pc.more?.get(key);
      if (hit !== undefined) return hit;
    }
    const c: Cached = { d: decide(this.selection(subject, dir), peer, l4, this.named) };
    if (pc === undefined) {
      if (subject.dec.size >= this.cacheSize) subject.dec.clear();
      subject.dec.set(peer.id, { key, c, more: null });
    } else {
      (pc.more ??= new Map()).set(key, c);
    }
    // Bound the memory of all decisions together, not only per endpoint.
    if (++this.decisions > this.cacheSize * 8) this.forget();
    return c;
  }

  /** Cache sizes, and how many rules were tested against an endpoint so far (the index keeps this small). */
  stats(): { endpoints: number; decisions: number; ruleChecks: number } {
    return { endpoints: this.byKey.size + this.worldSize, decisions: this.decisions, ruleChecks: this.ruleChecks };
  }

  /** Drops every cached endpoint and decision; they are rebuilt on demand. */
  private forget(): void {
    this.byIdentity = new Map();
    this.byKey = new Map();
    this.world = new Map();
    this.worldSize = 0;
    this.decisions = 0;
  }

  private resolve(ep: Endpoint | undefined, ip: string, names: readonly string[], service: Service | undefined, nodeLabels: readonly string[]): EpEntry {
    const identity = ep?.identity ?? 0;
    const labels = ep?.labels ?? EMPTY;
    const ns = ep?.namespace ?? '';
    const worldish = identity === 2 || identity === 9 || identity === 10 || identity >= 16777216 || (labels.length === 0 && identity === 0);
    if (!worldish) {
      let e: EpEntry | undefined;
      if (identity !== 1) {
        const hit = this.byIdentity.get(identity);
        if (hit !== undefined && hit.rawNs === ns && sameList(hit.raw, labels)) e = hit;
      }
      if (e === undefined) {
        const host = identity === 1 && nodeLabels.length > 0;
        const key = `${labels.join('\u0001')}\u0002${ns}${host ? `\u0002${nodeLabels.join('\u0001')}` : ''}`;
        e = this.byKey.get(key);
        if (e === undefined) {
          if (this.byKey.size >= this.cacheSize) this.forget();
          e = this.makeEntry(labels, identity, ns, host ? nodeLabels : EMPTY, ip, EMPTY, undefined, false);
          this.byKey.set(key, e);
        }
        if (identity > 0 && identity !== 1) this.byIdentity.set(identity, e);
      }
      // Labels that only describe an address (cidr:, fqdn:) mean a peer outside the cluster.
      if ((e.flags & WORLD_BITS) === 0) return e;
    }
    // By identity first: the same address can be plain world at one moment and
    // carry other reserved labels (kube-apiserver, ...) at another.
    let key = ip;
    if (this.hasFqdn && names.length > 0) key += `\u0001${names.join(',')}`;
    if (this.hasServices && service) key += `\u0002${service.namespace}/${service.name}`;
    let byAddr = this.world.get(identity);
    const w = byAddr?.get(key);
    if (w !== undefined) return w;
    if (this.worldSize >= this.cacheSize) {
      this.world.clear();
      this.worldSize = 0;
      byAddr = undefined;
    }
    if (byAddr === undefined) this.world.set(identity, (byAddr = new Map()));
    const e = this.makeEntry(labels, identity, ns, EMPTY, ip, names, service, true);
    byAddr.set(key, e);
    this.worldSize++;
    return e;
  }

  private makeEntry(labels: readonly string[], identity: number, ns: string, extra: readonly string[], ip: string, names: readonly string[], service: Service | undefined, world: boolean): EpEntry {
    const v = endpointLabelSet(labels, identity, ns, extra);
    let flags = v.flags;
    let addr = null;
    if (world || (flags & WORLD_BITS) !== 0) {
      flags |= ENTITY.world;
      if (!v.set.has('reserved', 'world')) v.set.add({ source: 'reserved', key: 'world', value: '' });
      addr = ip ? parseIp(ip) : null;
      if (addr) flags |= addr.v6 ? ENTITY.worldV6 : ENTITY.worldV4;
      flags &= ~ENTITY.cluster;
    }
    const isWorld = (flags & WORLD_BITS) !== 0;
    return {
      id: this.nextId++,
      labels: v.set,
      flags,
      ns: isWorld ? '' : v.ns,
      ip: isWorld ? addr : null,
      names: isWorld ? [...names] : EMPTY,
      service: isWorld && service ? { name: service.name, namespace: service.namespace } : null,
      raw: [...labels],
      rawNs: ns,
      sel: [undefined, undefined],
      dec: new Map(),
    };
  }

  /** The rules selecting an endpoint in one direction, from the index buckets of its own labels. */
  private selection(e: EpEntry, dir: Dir): Selection {
    const cached = e.sel[dir];
    if (cached !== undefined) return cached;
    const mark = ++this.epoch;
    const found: RuleEntry[] = [];
    const consider = (list: readonly RuleEntry[] | undefined) => {
      if (!list) return;
      for (const r of list) {
        if (r.mark === mark) continue;
        r.mark = mark;
        const s = dir === 0 ? r.rule.ingress : r.rule.egress;
        if (s === null) continue;
        this.ruleChecks++;
        if (ruleSelects(r.rule, e)) found.push(r);
      }
    };
    const scan = (idx: NsIndex | undefined) => {
      if (!idx) return;
      for (const l of e.labels.list) {
        consider(idx.eq.get(`${l.key}=${l.value}`));
        consider(idx.exists.get(l.key));
      }
      consider(idx.rest);
    };
    if ((e.flags & ENTITY.host) !== 0) consider(this.nodeRules);
    else {
      if (e.ns !== '') scan(this.index.get(e.ns));
      scan(this.index.get(''));
    }
    found.sort((a, b) => a.order - b.order);
    const sections: SectionRef[] = found.map((r) => ({ policy: r.policy, section: (dir === 0 ? r.rule.ingress : r.rule.egress)! }));
    return (e.sel[dir] = makeSelection(sections));
  }
}

