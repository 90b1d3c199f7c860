import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parseCidr, type Cidr, type CidrRule } from './cidr.js';
import { compileNameMatcher } from './l7.js';
import { ENTITY_NAMES } from './labels.js';
import {
  ALERT_ANNOTATION,
  policyId,
  type Peer,
  type PeerRule,
  type Policy,
  type PolicyKind,
  type Rule,
  type Section,
  type ServiceRef,
} from './policy.js';
import { compileCiliumPorts, compileIcmps, compileK8sPorts, type L4Matcher } from './ports.js';
import { compileSelector, k8sPeerSelector, scopePeer, scopeSubject, type Selector } from './selector.js';

// Reads CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and Kubernetes
// NetworkPolicy manifests (YAML with several documents, JSON, `List` kinds)
// into compiled policies. A policy that does not parse is reported with its
// name and the reason, and skipped; every other policy still loads.

export interface PolicyLoadError {
  /** File path (or manifest path, or API path) the policy came from. */
  source: string;
  /** kind/namespace/name when known, else "". */
  name: string;
  /** What is wrong, with the field path. */
  reason: string;
  /** 1-based line of the document in the file, when known. */
  line?: number;
  /** One sentence for logs and the CLI: where, what, and what to do. */
  message: string;
}

/** A manifest that is not a network policy (a Deployment, an Envoy config...). */
export interface SkippedManifest {
  source: string;
  kind: string;
  name: string;
  note: string;
}

export interface ParseResult {
  policies: Policy[];
  errors: PolicyLoadError[];
  skipped: SkippedManifest[];
}

export interface ParseOptions {
  /** Namespace of namespaced policies whose metadata has none (kubectl's default). */
  defaultNamespace?: string;
}

class SpecError extends Error {}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function makeError(source: string, name: string, reason: string, line?: number): PolicyLoadError {
  const where = line ? `${source}:${line}` : source;
  const what = name ? `${name}: ` : '';
  return {
    source,
    name,
    reason,
    ...(line ? { line } : {}),
    message: `${where}: ${what}${reason}; fix the manifest, this policy is ignored until then (the other policies still apply)`,
  };
}

function list(v: unknown, where: string): unknown[] | null {
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v)) throw new SpecError(`${where}: expected a list`);
  return v;
}

function stringMap(v: unknown, where: string): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isObj(v)) throw new SpecError(`${where}: expected a map of strings`);
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(v)) out[k] = typeof x === 'string' ? x : String(x);
  return out;
}

function cidrOf(v: unknown, where: string): Cidr {
  if (typeof v !== 'string') throw new SpecError(`${where}: expected a CIDR such as 10.0.0.0/8 or 2001:db8::/32`);
  const c = parseCidr(v);
  if (!c) throw new SpecError(`${where}: "${v}" is not a CIDR (such as 10.0.0.0/8 or 2001:db8::/32)`);
  return c;
}

function cidrSet(v: unknown, where: string, warnings: string[]): CidrRule[] {
  const out: CidrRule[] = [];
  list(v, where)?.forEach((e, i) => {
    const w = `${where}[${i}]`;
    if (!isObj(e)) throw new SpecError(`${w}: expected {cidr, except}`);
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
      if (x.v6 !== cidr.v6) throw new SpecError(`${w}.except[${j}]: "${x.text}" is not the same IP family as ${cidr.text}`);
    }
    out.push({ cidr, except });
  });
  return out;
}

function entities(v: unknown, where: string): number {
  let bits = 0;
  list(v, where)?.forEach((e, i) => {
    const b = typeof e === 'string' ? ENTITY_NAMES[e] : undefined;
    if (b === undefined) throw new SpecError(`${where}[${i}]: "${String(e)}" is not an entity (${Object.keys(ENTITY_NAMES).join(', ')})`);
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
    if (!isObj(s)) throw new SpecError(`${w}: expected {k8sService} or {k8sServiceSelector}`);
    if (isObj(s.k8sService)) {
      const name = s.k8sService.serviceName;
      if (typeof name !== 'string' || name === '') throw new SpecError(`${w}.k8sService.serviceName: required`);
      const ns = typeof s.k8sService.namespace === 'string' && s.k8sService.namespace !== '' ? s.k8sService.namespace : scope.namespace;
      out.push({ name, namespace: ns });
    } else if (isObj(s.k8sServiceSelector)) {
      scope.warnings.push(`${w}.k8sServiceSelector: flows do not carry service labels, so this peer matches no flow`);
    } else {
      throw new SpecError(`${w}: expected {k8sService} or {k8sServiceSelector}`);
    }
  });
  return out;
}

const L3_INGRESS = ['fromEndpoints', 'fromCIDR', 'fromCIDRSet', 'fromEntities', 'fromNodes', 'fromGroups'] as const;
const L3_EGRESS = ['toEndpoints', 'toCIDR', 'toCIDRSet', 'toEntities', 'toNodes', 'toGroups', 'toServices', 'toFQDNs'] as const;

/** One Cilium ingress/egress (deny) rule. */
function peerRule(r: unknown, where: string, dir: 'ingress' | 'egress', deny: boolean, scope: Scope): { rule: PeerRule; requires: Selector[] } {
  if (!isObj(r)) throw new SpecError(`${where}: expected a rule object`);
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
  if (r[`${p}Groups`] !== undefined && r[`${p}Groups`] !== null) scope.warnings.push(`${where}.${p}Groups: cloud security groups are not resolved, so this peer matches no address`);
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
    if (typeof dflt !== 'boolean') throw new SpecError(`${where}.enableDefaultDeny.${dir}: expected true or false`);
    defaultDeny = dflt;
  }
  return { allows: a, denies: d, requires, defaultDeny };
}

function ciliumRule(spec: unknown, where: string, kind: PolicyKind, namespace: string, warnings: string[]): Rule {
  if (!isObj(spec)) throw new SpecError(`${where}: expected a rule object with endpointSelector`);
  const hasEs = spec.endpointSelector !== undefined && spec.endpointSelector !== null;
  const hasNs = spec.nodeSelector !== undefined && spec.nodeSelector !== null;
  if (hasEs === hasNs) throw new SpecError(`${where}: needs exactly one of endpointSelector and nodeSelector`);
  if (hasNs && kind !== 'CiliumClusterwideNetworkPolicy') throw new SpecError(`${where}.nodeSelector: only a CiliumClusterwideNetworkPolicy may select nodes`);
  const es = hasEs ? compileSelector(spec.endpointSelector, `${where}.endpointSelector`) : null;
  const subjectMatchesInit = es !== null && es.reqs.some((r) => r.source === 'reserved' && r.key === 'init');
  const scope: Scope = { namespace, subjectMatchesInit, warnings };
  const ded = spec.enableDefaultDeny;
  if (ded !== undefined && ded !== null && !isObj(ded)) throw new SpecError(`${where}.enableDefaultDeny: expected {ingress: bool, egress: bool}`);
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
    if (!isObj(p)) throw new SpecError(`${w}: expected {podSelector, namespaceSelector} or {ipBlock}`);
    const hasPod = p.podSelector !== undefined && p.podSelector !== null;
    const hasNs = p.namespaceSelector !== undefined && p.namespaceSelector !== null;
    const hasIp = p.ipBlock !== undefined && p.ipBlock !== null;
    if (hasIp) {
      if (hasPod || hasNs) throw new SpecError(`${w}: ipBlock cannot be combined with podSelector or namespaceSelector`);
      if (!isObj(p.ipBlock)) throw new SpecError(`${w}.ipBlock: expected {cidr, except}`);
      const cidr = cidrOf(p.ipBlock.cidr, `${w}.ipBlock.cidr`);
      const except = (list(p.ipBlock.except, `${w}.ipBlock.except`) ?? []).map((x, j) => cidrOf(x, `${w}.ipBlock.except[${j}]`));
      cidrs.push({ cidr, except });
      return;
    }
    if (!hasPod && !hasNs) throw new SpecError(`${w}: a peer needs podSelector, namespaceSelector or ipBlock`);
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
    if (r !== null && !isObj(r)) throw new SpecError(`${w}: expected {${peerField}, ports}`);
    const o = (r ?? {}) as Obj;
    const ports = list(o.ports, `${w}.ports`);
    return {
      peer: k8sPeers(o[peerField], `${w}.${peerField}`, namespace),
      l4: ports && ports.length > 0 ? { ports: compileK8sPorts(ports, `${w}.ports`), icmps: [] } : null,
    };
  });
  return { allows, denies: [], requires: [], defaultDeny: true };
}

function k8sRule(spec: unknown, namespace: string): Rule {
  if (!isObj(spec)) throw new SpecError('spec: expected an object with podSelector');
  const subject = scopeSubject(compileSelector(spec.podSelector ?? {}, 'spec.podSelector', 'k8s'), namespace);
  let types: string[];
  const pt = list(spec.policyTypes, 'spec.policyTypes');
  if (pt && pt.length > 0) {
    types = pt.map((t, i) => {
      const s = String(t).toLowerCase();
      if (s !== 'ingress' && s !== 'egress') throw new SpecError(`spec.policyTypes[${i}]: "${String(t)}" is not Ingress or Egress`);
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

const CILIUM_KINDS = new Set(['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy']);

export type ObjectResult =
  | { policy: Policy }
  | { error: PolicyLoadError }
  | { skipped: SkippedManifest }
  | null;

/**
 * One Kubernetes object (already decoded). Returns null for empty documents.
 * `kindHint` is the item kind of a typed list whose items omit `kind`.
 */
export function parsePolicyObject(obj: unknown, source: string, opts: ParseOptions & { line?: number; kindHint?: string } = {}): ObjectResult {
  if (obj === null || obj === undefined) return null;
  if (!isObj(obj)) return { error: makeError(source, '', `expected a Kubernetes object (apiVersion, kind, metadata), got ${Array.isArray(obj) ? 'a list' : typeof obj}`, opts.line) };
  const kind = typeof obj.kind === 'string' && obj.kind !== '' ? obj.kind : opts.kindHint ?? '';
  const apiVersion = typeof obj.apiVersion === 'string' ? obj.apiVersion : '';
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  const rawName = typeof meta.name === 'string' ? meta.name : '';
  if (!kind) return { skipped: { source, kind: '', name: rawName, note: 'no kind: not a Kubernetes object' } };
  const isCilium = CILIUM_KINDS.has(kind) && (apiVersion === '' || apiVersion.startsWith('cilium.io/'));
  const isK8s = kind === 'NetworkPolicy' && (apiVersion === '' || apiVersion.startsWith('networking.k8s.io/'));
  if (!isCilium && !isK8s) {
    const note = kind === 'NetworkPolicy' || CILIUM_KINDS.has(kind) ? `${apiVersion} ${kind} is not a Cilium or Kubernetes network policy` : `${kind} is not a network policy`;
    return { skipped: { source, kind, name: rawName, note } };
  }
  const policyKind = kind as PolicyKind;
  const clusterwide = policyKind === 'CiliumClusterwideNetworkPolicy';
  const namespace = clusterwide ? '' : typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : opts.defaultNamespace ?? 'default';
  const id = policyId({ kind, namespace, name: rawName || '?' });
  if (!rawName) return { error: makeError(source, id, 'metadata.name is missing', opts.line) };
  const warnings: string[] = [];
  try {
    const labels = stringMap(meta.labels, 'metadata.labels');
    const annotations = stringMap(meta.annotations, 'metadata.annotations');
    const a = (meta.annotations as Obj | undefined)?.[ALERT_ANNOTATION];
    const alert = a === true || (typeof a === 'string' && a.toLowerCase() === 'true');
    if (clusterwide && typeof meta.namespace === 'string' && meta.namespace !== '') warnings.push(`metadata.namespace "${meta.namespace}" is ignored: the policy is clusterwide`);
    let rules: Rule[];
    if (isCilium) {
      const specs: { spec: unknown; where: string }[] = [];
      if (obj.spec !== undefined && obj.spec !== null) specs.push({ spec: obj.spec, where: 'spec' });
      const many = list(obj.specs, 'specs');
      many?.forEach((s, i) => specs.push({ spec: s, where: `specs[${i}]` }));
      if (specs.length === 0) throw new SpecError('has neither spec nor specs');
      rules = specs.map((s) => ciliumRule(s.spec, s.where, policyKind, namespace, warnings));
    } else {
      rules = [k8sRule(obj.spec, namespace)];
    }
    const rv = typeof meta.resourceVersion === 'string' ? meta.resourceVersion : undefined;
    const policy: Policy = {
      kind: policyKind,
      namespace,
      name: rawName,
      ref: Object.freeze({ kind: policyKind, namespace, name: rawName }),
      alert,
      labels,
      annotations,
      source,
      rules,
      warnings,
      ...(rv ? { resourceVersion: rv } : {}),
    };
    return { policy };
  } catch (e) {
    return { error: makeError(source, id, (e as Error).message, opts.line) };
  }
}

/** Line numbers of increasing offsets, counting each part of the text once (files hold thousands of documents). */
function lineCounter(text: string): (offset: number) => number {
  let pos = 0;
  let line = 1;
  return (offset) => {
    const end = Math.min(offset, text.length);
    for (; pos < end; pos++) if (text.charCodeAt(pos) === 10) line++;
    return line;
  };
}

function decodeDocuments(path: string, text: string): { docs: { value: unknown; line: number }[]; errors: PolicyLoadError[] } {
  if (extname(path).toLowerCase() === '.json') {
    try {
      return { docs: [{ value: JSON.parse(text) as unknown, line: 1 }], errors: [] };
    } catch (e) {
      return { docs: [], errors: [makeError(path, '', `not valid JSON (${(e as Error).message})`)] };
    }
  }
  const docs: { value: unknown; line: number }[] = [];
  const errors: PolicyLoadError[] = [];
  const lineOf = lineCounter(text);
  for (const doc of parseAllDocuments(text)) {
    const line = lineOf(doc.range[0]);
    if (doc.errors.length > 0) {
      const e = doc.errors[0]!;
      const at = e.linePos?.[0]?.line ?? line;
      const meta = doc.contents && 'get' in doc.contents ? (doc.toJS() as Obj | null)?.metadata : undefined;
      const name = isObj(meta) && typeof meta.name === 'string' ? meta.name : '';
      errors.push(makeError(path, name, `YAML error: ${e.message.split('\n')[0]}`, at));
      continue;
    }
    docs.push({ value: doc.toJS({ maxAliasCount: 100 }) as unknown, line });
  }
  return { docs, errors };
}

function listItemKind(kind: string): string | undefined {
  return kind.endsWith('List') && kind !== 'List' ? kind.slice(0, -4) : undefined;
}

/**
 * Policies from manifest files already in memory (the agent's configuration
 * project, files given on the command line). Duplicate kind/namespace/name:
 * the first wins and the later one is reported.
 */
export function parsePolicyManifests(files: { path: string; data: string | Buffer }[], opts: ParseOptions = {}): ParseResult {
  const out: ParseResult = { policies: [], errors: [], skipped: [] };
  const seen = new Map<string, string>();
  for (const f of files) {
    const text = typeof f.data === 'string' ? f.data : f.data.toString('utf8');
    const { docs, errors } = decodeDocuments(f.path, text);
    out.errors.push(...errors);
    for (const d of docs) {
      const items: { obj: unknown; hint?: string }[] = [];
      if (isObj(d.value) && typeof d.value.kind === 'string' && d.value.kind.endsWith('List') && Array.isArray(d.value.items)) {
        const hint = listItemKind(d.value.kind);
        for (const it of d.value.items) items.push({ obj: it, ...(hint ? { hint } : {}) });
      } else {
        items.push({ obj: d.value });
      }
      for (const it of items) {
        const r = parsePolicyObject(it.obj, f.path, { ...opts, line: d.line, ...(it.hint ? { kindHint: it.hint } : {}) });
        if (r === null) continue;
        if ('error' in r) out.errors.push(r.error);
        else if ('skipped' in r) out.skipped.push(r.skipped);
        else {
          const id = policyId(r.policy);
          const first = seen.get(id);
          if (first !== undefined) {
            out.errors.push(makeError(f.path, id, `defined again (first in ${first}); the first definition is used`, d.line));
            continue;
          }
          seen.set(id, f.path);
          out.policies.push(r.policy);
        }
      }
    }
  }
  return out;
}

const MANIFEST_EXT = new Set(['.yaml', '.yml', '.json']);

async function collect(path: string, out: string[], errors: PolicyLoadError[], top: boolean): Promise<void> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    errors.push(makeError(path, '', code === 'ENOENT' ? 'no such file or directory' : `cannot read (${code ?? (e as Error).message})`));
    return;
  }
  if (st.isDirectory()) {
    const names = (await readdir(path)).sort();
    for (const n of names) {
      if (n.startsWith('.')) continue;
      const p = join(path, n);
      const s = await stat(p).catch(() => null);
      if (s?.isDirectory()) await collect(p, out, errors, false);
      else if (MANIFEST_EXT.has(extname(n).toLowerCase())) out.push(p);
    }
  } else if (top || MANIFEST_EXT.has(extname(path).toLowerCase())) {
    out.push(path);
  }
}

/** Policies from files and directories (searched recursively for .yaml, .yml and .json). */
export async function loadPolicyFiles(paths: string[], opts: ParseOptions = {}): Promise<ParseResult> {
  const files: string[] = [];
  const errors: PolicyLoadError[] = [];
  for (const p of paths) await collect(p, files, errors, true);
  const loaded: { path: string; data: Buffer }[] = [];
  for (const path of files) {
    try {
      loaded.push({ path, data: await readFile(path) });
    } catch (e) {
      errors.push(makeError(path, '', `cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`));
    }
  }
  const r = parsePolicyManifests(loaded, opts);
  r.errors.unshift(...errors);
  return r;
}
