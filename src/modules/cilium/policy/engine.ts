import type { Endpoint, Flow, Service } from '../../../gen/flow/flow.js';
import { parseIp } from './cidr.js';
import { endpointLabelSet, ENTITY, WORLD_BITS } from './labels.js';
import { Matcher, type Cached, type Dir, type EngineOptions } from './matcher.js';
import { decide, makeSelection, ruleSelects, type EndpointView, type Policy, type Rule, type SectionRef, type Selection } from './policy.js';
import { flowL4 } from './ports.js';
import { selectorAnchor } from './selector.js';

export type { EngineOptions } from './matcher.js';

// The indexed, cached matcher the agent runs.
//
// Cost per flow must not grow with policies that cannot select the flow's
// endpoints, so rules are indexed by namespace and by one label requirement of
// their subject selector; an endpoint looks up only the buckets of its own
// labels. What repeats is cached: an endpoint (by identity, checked against
// its labels) is resolved once, the rules selecting it once per direction, and
// the decision once per (subject, peer, direction, protocol, port). A cache hit
// allocates nothing.

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
  // The agent's flows share one decoded label list per endpoint (flow-decode.ts).
  if (a === b) return true;
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

  private makeEntry(
    labels: readonly string[],
    identity: number,
    ns: string,
    extra: readonly string[],
    ip: string,
    names: readonly string[],
    service: Service | undefined,
    world: boolean,
  ): EpEntry {
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
