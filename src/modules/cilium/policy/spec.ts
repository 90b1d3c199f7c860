import { parseCidr, type Cidr, type CidrRule } from './cidr.js';
import { compileNameMatcher } from './l7.js';
import { ENTITY_NAMES } from './labels.js';
import type { Peer, PeerRule, PolicyKind, Rule, Section, ServiceRef } from './policy.js';
import { compileCiliumPorts, compileIcmps, compileK8sPorts, type L4Matcher } from './ports.js';
import { compileSelector, k8sPeerSelector, scopePeer, scopeSubject, type Selector } from './selector.js';
import { VerdictError } from '../../../shared/errors.js';

// The spec of one policy, Cilium's rules or a Kubernetes NetworkPolicy's, to
// the compiled rules the matchers evaluate. Anything that cannot mean what it
// says throws a VerdictError (VERDICT_POLICY_INVALID) naming the field path; what flows cannot show is a
// warning (parse.ts turns both into messages with the file and policy).

export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function list(v: unknown, where: string): unknown[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a list`);
  return v;
}

export function stringMap(v: unknown, where: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a map of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) out[k] = typeof x === 'string' ? x : String(x);
  return out;
}

function cidrOf(v: unknown, where: string): Cidr {
  if (typeof v !== 'string') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32`);
  const c = parseCidr(v);
  if (!c) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: "${v}" is not a CIDR (such as 10.0.0.0/8 or 2001:db8::/32)`);
  return c;
}

function cidrSet(v: unknown, where: string, warnings: string[]): CidrRule[] {
  const out: CidrRule[] = [];
  list(v, where)?.forEach((e, i) => {
    const w = `${where}[${i}]`;
    if (!isObj(e)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {cidr, except}`);
    if (e.cidr === undefined && e.cidrGroupRef !== undefined) {
      warnings.push(`${w}.cidrGroupRef "${String(e.cidrGroupRef)}": CiliumCIDRGroups are not loaded, so this peer matches no address`);
      return;
    }
    if (e.cidr === undefined && e.cidrGroupSelector !== undefined) {
      warnings.push(`${w}.cidrGroupSelector: CiliumCIDRGroups are not loaded, so this peer matches no address`);
      return;
    }
    const cidr = cidrOf(e.cidr, `${w}.cidr`);
    const except = (list(e.except, `${w}.except`) ?? []).map((x, j) => cidrOf(x, `${w}.except[${j}]`));
    for (const [j, x] of except.entries()) {
      if (x.v6 !== cidr.v6) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.except[${j}]: "${x.text}" is not the same IP family as ${cidr.text}`);
    }
    out.push({ cidr, except });
  });
  return out;
}

function entities(v: unknown, where: string): number {
  let bits = 0;
  list(v, where)?.forEach((e, i) => {
    const b = typeof e === 'string' ? ENTITY_NAMES[e] : undefined;
    if (b === undefined)
      throw new VerdictError('VERDICT_POLICY_INVALID', `${where}[${i}]: "${String(e)}" is not an entity (${Object.keys(ENTITY_NAMES).join(', ')})`);
    bits |= b;
  });
  return bits;
}

interface Scope {
  namespace: string; // '' clusterwide
  subjectMatchesInit: boolean;
  warnings: string[];
}

function selectors(v: unknown, where: string, scope: Scope): Selector[] {
  return (list(v, where) ?? []).map((s, i) => scopePeer(compileSelector(s, `${where}[${i}]`), scope.namespace, scope.subjectMatchesInit));
}

function services(v: unknown, where: string, scope: Scope): ServiceRef[] {
  const out: ServiceRef[] = [];
  list(v, where)?.forEach((s, i) => {
    const w = `${where}[${i}]`;
    if (!isObj(s)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {k8sService} or {k8sServiceSelector}`);
    if (isObj(s.k8sService)) {
      const name = s.k8sService.serviceName;
      if (typeof name !== 'string' || name === '') throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.k8sService.serviceName: required`);
      const ns = typeof s.k8sService.namespace === 'string' && s.k8sService.namespace !== '' ? s.k8sService.namespace : scope.namespace;
      out.push({ name, namespace: ns });
    } else if (isObj(s.k8sServiceSelector)) {
      scope.warnings.push(`${w}.k8sServiceSelector: flows do not carry service labels, so this peer matches no flow`);
    } else {
      throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {k8sService} or {k8sServiceSelector}`);
    }
  });
  return out;
}

const L3_INGRESS = ['fromEndpoints', 'fromCIDR', 'fromCIDRSet', 'fromEntities', 'fromNodes', 'fromGroups'] as const;
const L3_EGRESS = ['toEndpoints', 'toCIDR', 'toCIDRSet', 'toEntities', 'toNodes', 'toGroups', 'toServices', 'toFQDNs'] as const;

/** One Cilium ingress/egress (deny) rule. */
function peerRule(r: unknown, where: string, dir: 'ingress' | 'egress', deny: boolean, scope: Scope): { rule: PeerRule; requires: Selector[] } {
  if (!isObj(r)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a rule object`);
  const p = dir === 'ingress' ? 'from' : 'to';
  const l3Fields = dir === 'ingress' ? L3_INGRESS : L3_EGRESS;
  const hasL3 = l3Fields.some((f) => r[f] !== undefined && r[f] !== null);
  const toPorts = list(r.toPorts, `${where}.toPorts`);
  const icmps = list(r.icmps, `${where}.icmps`);
  const hasL4 = (toPorts?.length ?? 0) > 0 || (icmps?.length ?? 0) > 0;
  const l4: L4Matcher | null = hasL4
    ? { ports: toPorts ? compileCiliumPorts(toPorts, `${where}.toPorts`, !deny) : [], icmps: icmps ? compileIcmps(icmps, `${where}.icmps`) : [] }
    : null;
  const cidrs: CidrRule[] = [];
  for (const [i, c] of (list(r[`${p}CIDR`], `${where}.${p}CIDR`) ?? []).entries()) cidrs.push({ cidr: cidrOf(c, `${where}.${p}CIDR[${i}]`), except: [] });
  cidrs.push(...cidrSet(r[`${p}CIDRSet`], `${where}.${p}CIDRSet`, scope.warnings));
  if (r[`${p}Groups`] !== undefined && r[`${p}Groups`] !== null)
    scope.warnings.push(`${where}.${p}Groups: cloud security groups are not resolved, so this peer matches no address`);
  const fqdns = dir === 'egress' ? (list(r.toFQDNs, `${where}.toFQDNs`) ?? []).map((f, i) => compileNameMatcher(f, `${where}.toFQDNs[${i}]`)) : [];
  const peer: Peer = {
    // No peer at all: a rule with ports allows them from/to anyone; an empty rule allows nothing.
    wildcard: !hasL3 && hasL4,
    endpoints: selectors(r[`${p}Endpoints`], `${where}.${p}Endpoints`, scope),
    nodes: (list(r[`${p}Nodes`], `${where}.${p}Nodes`) ?? []).map((s, i) => compileSelector(s, `${where}.${p}Nodes[${i}]`)),
    entities: entities(r[`${p}Entities`], `${where}.${p}Entities`),
    cidrs,
    fqdns,
    services: dir === 'egress' ? services(r.toServices, `${where}.toServices`, scope) : [],
  };
  const reqField = `${p}Requires`;
  const requires = selectors(r[reqField], `${where}.${reqField}`, scope);
  if (deny && requires.length > 0) {
    scope.warnings.push(`${where}.${reqField}: requirements in deny rules are not applied`);
    return { rule: { peer, l4 }, requires: [] };
  }
  return { rule: { peer, l4 }, requires };
}

function ciliumSection(allow: unknown, deny: unknown, dflt: unknown, where: string, dir: 'ingress' | 'egress', scope: Scope): Section | null {
  const denyName = `${dir}Deny`;
  const allows = list(allow, `${where}.${dir}`) ?? [];
  const denies = list(deny, `${where}.${denyName}`) ?? [];
  if (allows.length === 0 && denies.length === 0) return null;
  const requires: Selector[] = [];
  const a = allows.map((r, i) => {
    const x = peerRule(r, `${where}.${dir}[${i}]`, dir, false, scope);
    requires.push(...x.requires);
    return x.rule;
  });
  const d = denies.map((r, i) => peerRule(r, `${where}.${denyName}[${i}]`, dir, true, scope).rule);
  let defaultDeny = true;
  if (dflt !== undefined && dflt !== null) {
    if (typeof dflt !== 'boolean') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.enableDefaultDeny.${dir}: expected true or false`);
    defaultDeny = dflt;
  }
  return { allows: a, denies: d, requires, defaultDeny };
}

export function ciliumRule(spec: unknown, where: string, kind: PolicyKind, namespace: string, warnings: string[]): Rule {
  if (!isObj(spec)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a rule object with endpointSelector`);
  const hasEs = spec.endpointSelector !== undefined && spec.endpointSelector !== null;
  const hasNs = spec.nodeSelector !== undefined && spec.nodeSelector !== null;
  if (hasEs === hasNs) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: needs exactly one of endpointSelector and nodeSelector`);
  if (hasNs && kind !== 'CiliumClusterwideNetworkPolicy')
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.nodeSelector: only a CiliumClusterwideNetworkPolicy may select nodes`);
  const es = hasEs ? compileSelector(spec.endpointSelector, `${where}.endpointSelector`) : null;
  const subjectMatchesInit = es?.reqs.some((r) => r.source === 'reserved' && r.key === 'init') ?? false;
  const scope: Scope = { namespace, subjectMatchesInit, warnings };
  const ded = spec.enableDefaultDeny;
  if (ded !== undefined && ded !== null && !isObj(ded))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.enableDefaultDeny: expected {ingress: bool, egress: bool}`);
  return {
    subject: es ? scopeSubject(es, namespace) : null,
    nodeSubject: hasNs ? compileSelector(spec.nodeSelector, `${where}.nodeSelector`) : null,
    ingress: ciliumSection(spec.ingress, spec.ingressDeny, isObj(ded) ? ded.ingress : undefined, where, 'ingress', scope),
    egress: ciliumSection(spec.egress, spec.egressDeny, isObj(ded) ? ded.egress : undefined, where, 'egress', scope),
  };
}

function k8sPeers(v: unknown, where: string, namespace: string): Peer {
  const peers = list(v, where);
  // No `from`/`to` (or an empty list): every peer.
  if (peers === null || peers.length === 0) return { wildcard: true, endpoints: [], nodes: [], entities: 0, cidrs: [], fqdns: [], services: [] };
  const endpoints: Selector[] = [];
  const cidrs: CidrRule[] = [];
  peers.forEach((p, i) => {
    const w = `${where}[${i}]`;
    if (!isObj(p)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {podSelector, namespaceSelector} or {ipBlock}`);
    const hasPod = p.podSelector !== undefined && p.podSelector !== null;
    const hasNs = p.namespaceSelector !== undefined && p.namespaceSelector !== null;
    const hasIp = p.ipBlock !== undefined && p.ipBlock !== null;
    if (hasIp) {
      if (hasPod || hasNs) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: ipBlock cannot be combined with podSelector or namespaceSelector`);
      if (!isObj(p.ipBlock)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.ipBlock: expected {cidr, except}`);
      const cidr = cidrOf(p.ipBlock.cidr, `${w}.ipBlock.cidr`);
      const except = (list(p.ipBlock.except, `${w}.ipBlock.except`) ?? []).map((x, j) => cidrOf(x, `${w}.ipBlock.except[${j}]`));
      cidrs.push({ cidr, except });
      return;
    }
    if (!hasPod && !hasNs) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: a peer needs podSelector, namespaceSelector or ipBlock`);
    const pod = hasPod ? compileSelector(p.podSelector, `${w}.podSelector`, 'k8s') : undefined;
    const ns = hasNs ? compileSelector(p.namespaceSelector, `${w}.namespaceSelector`, 'k8s') : undefined;
    endpoints.push(k8sPeerSelector(pod, ns, namespace));
  });
  return { wildcard: false, endpoints, nodes: [], entities: 0, cidrs, fqdns: [], services: [] };
}

function k8sSection(rules: unknown, where: string, dir: 'ingress' | 'egress', namespace: string): Section {
  const peerField = dir === 'ingress' ? 'from' : 'to';
  const allows = (list(rules, `${where}.${dir}`) ?? []).map((r, i): PeerRule => {
    const w = `${where}.${dir}[${i}]`;
    if (r !== null && !isObj(r)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {${peerField}, ports}`);
    const o = (r ?? {}) as Obj;
    const ports = list(o.ports, `${w}.ports`);
    return {
      peer: k8sPeers(o[peerField], `${w}.${peerField}`, namespace),
      l4: ports && ports.length > 0 ? { ports: compileK8sPorts(ports, `${w}.ports`), icmps: [] } : null,
    };
  });
  return { allows, denies: [], requires: [], defaultDeny: true };
}

export function k8sRule(spec: unknown, namespace: string): Rule {
  if (!isObj(spec)) throw new VerdictError('VERDICT_POLICY_INVALID', 'spec: expected an object with podSelector');
  const subject = scopeSubject(compileSelector(spec.podSelector ?? {}, 'spec.podSelector', 'k8s'), namespace);
  let types: string[];
  const pt = list(spec.policyTypes, 'spec.policyTypes');
  if (pt && pt.length > 0) {
    types = pt.map((t, i) => {
      const s = String(t).toLowerCase();
      if (s !== 'ingress' && s !== 'egress')
        throw new VerdictError('VERDICT_POLICY_INVALID', `spec.policyTypes[${i}]: "${String(t)}" is not Ingress or Egress`);
      return s;
    });
  } else {
    types = ['ingress'];
    if (spec.egress !== undefined && spec.egress !== null) types.push('egress');
  }
  return {
    subject,
    nodeSubject: null,
    ingress: types.includes('ingress') ? k8sSection(spec.ingress, 'spec', 'ingress', namespace) : null,
    egress: types.includes('egress') ? k8sSection(spec.egress, 'spec', 'egress', namespace) : null,
  };
}
