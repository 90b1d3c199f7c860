import { readdir, readFile, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { CILIUM_POLICY, K8S_NETWORK_POLICY, unknownFields } from './known-fields.js';
import { ALERT_ANNOTATION, policyId, type Policy, type PolicyKind, type Rule } from './policy.js';
import { ciliumRule, isObj, k8sRule, list, stringMap, type Obj } from './spec.js';
import { VerdictError } from '../../../shared/errors.js';

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

const FIX_MANIFEST = 'fix the manifest, this policy is ignored until then (the other policies still apply)';
// A syntax error loses the whole document (YAML) or file (JSON), whatever policies it held.
const FIX_YAML = 'fix the YAML, this document is ignored until then (the other documents and files still apply)';
const FIX_JSON = 'fix the JSON, this file is ignored until then (the other files still apply)';

function makeError(source: string, name: string, reason: string, line?: number, remedy = FIX_MANIFEST): PolicyLoadError {
  const where = line ? `${source}:${line}` : source;
  const what = name ? `${name}: ` : '';
  return {
    source,
    name,
    reason,
    ...(line ? { line } : {}),
    message: `${where}: ${what}${reason}; ${remedy}`,
  };
}

const RULE_FIELDS = ['endpointSelector', 'nodeSelector', 'ingress', 'ingressDeny', 'egress', 'egressDeny'];

/** A bare Cilium rule (no apiVersion/kind), as `cilium policy import` reads them. */
function looksLikeBareRule(v: unknown): boolean {
  return isObj(v) && v.kind === undefined && v.apiVersion === undefined && RULE_FIELDS.some((f) => v[f] !== undefined);
}

/**
 * `cilium policy import` takes a JSON list of rules, without the Kubernetes
 * object around them; people keep such files. Name the format and say how to
 * wrap it, rather than calling it a broken manifest.
 */
function bareRulesError(source: string, many: boolean, line?: number): PolicyLoadError {
  const what = many
    ? 'a Cilium rule list as `cilium policy import` reads it (a list of rules with endpointSelector and ingress/egress, no apiVersion or kind), not a Kubernetes object'
    : 'a bare Cilium rule (endpointSelector and ingress/egress, no apiVersion or kind), not a Kubernetes object';
  const wrap = many ? 'specs: <the list>' : 'spec: <the rule>';
  return makeError(
    source,
    '',
    what,
    line,
    `wrap it as "apiVersion: cilium.io/v2, kind: CiliumClusterwideNetworkPolicy, metadata: {name: <name>}, ${wrap}" (clusterwide, as imported rules apply in every namespace), or as kind: CiliumNetworkPolicy with metadata.namespace to limit it to one namespace; ${many ? 'these rules are' : 'this rule is'} ignored until then (the other policies still apply)`,
  );
}

/**
 * The opt-in written so that it silently does not opt in: as a label, under a
 * misspelt key, or with a value other than "true" or "false".
 */
function optInMistakes(value: unknown, labels: Record<string, string>, annotations: Record<string, string>): string[] {
  const out: string[] = [];
  const fix = `annotate it ${ALERT_ANNOTATION}: "true" to raise alerts`;
  if (value === undefined && labels[ALERT_ANNOTATION] !== undefined)
    out.push(`metadata.labels.${ALERT_ANNOTATION} is a label; Verdict reads the annotation, so this policy raises no alerts: ${fix}`);
  if (value === undefined) {
    const near = Object.keys(annotations).find(
      (k) =>
        k !== ALERT_ANNOTATION &&
        k
          .toLowerCase()
          .replace(/[^a-z]/g, '')
          .startsWith('appgitlabcomalert'),
    );
    if (near) out.push(`metadata.annotations.${near} is not ${ALERT_ANNOTATION}, so this policy raises no alerts: ${fix}`);
  }
  if (typeof value === 'string' && !/^(true|false)$/i.test(value))
    out.push(`metadata.annotations.${ALERT_ANNOTATION}: "${value}" is neither "true" nor "false", and only "true" raises alerts`);
  return out;
}

const CILIUM_KINDS = new Set(['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy']);

export type ObjectResult = { policy: Policy } | { error: PolicyLoadError } | { skipped: SkippedManifest } | null;

/**
 * One Kubernetes object (already decoded). Returns null for empty documents.
 * `kindHint` is the item kind of a typed list whose items omit `kind`.
 */
export function parsePolicyObject(obj: unknown, source: string, opts: ParseOptions & { line?: number; kindHint?: string } = {}): ObjectResult {
  if (obj === null || obj === undefined) return null;
  if (Array.isArray(obj) && obj.length > 0 && obj.every((r) => isObj(r) && r.kind === undefined && r.apiVersion === undefined) && obj.some(looksLikeBareRule)) {
    return { error: bareRulesError(source, true, opts.line) };
  }
  if (looksLikeBareRule(obj) && !opts.kindHint) return { error: bareRulesError(source, false, opts.line) };
  if (!isObj(obj))
    return {
      error: makeError(source, '', `expected a Kubernetes object (apiVersion, kind, metadata), got ${Array.isArray(obj) ? 'a list' : typeof obj}`, opts.line),
    };
  const kind = typeof obj.kind === 'string' && obj.kind !== '' ? obj.kind : (opts.kindHint ?? '');
  const apiVersion = typeof obj.apiVersion === 'string' ? obj.apiVersion : '';
  const meta = isObj(obj.metadata) ? obj.metadata : {};
  const rawName = typeof meta.name === 'string' ? meta.name : '';
  if (!kind) return { skipped: { source, kind: '', name: rawName, note: 'no kind: not a Kubernetes object' } };
  const isCilium = CILIUM_KINDS.has(kind) && (apiVersion === '' || apiVersion.startsWith('cilium.io/'));
  const isK8s = kind === 'NetworkPolicy' && (apiVersion === '' || apiVersion.startsWith('networking.k8s.io/'));
  if (!isCilium && !isK8s) {
    const note =
      kind === 'NetworkPolicy' || CILIUM_KINDS.has(kind)
        ? `${apiVersion} ${kind} is not a Cilium or Kubernetes network policy`
        : `${kind} is not a network policy`;
    return { skipped: { source, kind, name: rawName, note } };
  }
  const policyKind = kind as PolicyKind;
  const clusterwide = policyKind === 'CiliumClusterwideNetworkPolicy';
  const namespace = clusterwide ? '' : typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : (opts.defaultNamespace ?? 'default');
  const id = policyId({ kind, namespace, name: rawName || '?' });
  if (!rawName) return { error: makeError(source, id, 'metadata.name is missing', opts.line) };
  const warnings: string[] = [];
  try {
    const labels = stringMap(meta.labels, 'metadata.labels');
    const annotations = stringMap(meta.annotations, 'metadata.annotations');
    const a = (meta.annotations as Obj | undefined)?.[ALERT_ANNOTATION];
    const alert = a === true || (typeof a === 'string' && a.toLowerCase() === 'true');
    warnings.push(...optInMistakes(a, labels, annotations));
    if (clusterwide && typeof meta.namespace === 'string' && meta.namespace !== '')
      warnings.push(`metadata.namespace "${meta.namespace}" is ignored: the policy is clusterwide`);
    let rules: Rule[];
    if (isCilium) {
      const specs: { spec: unknown; where: string }[] = [];
      if (obj.spec !== undefined && obj.spec !== null) specs.push({ spec: obj.spec, where: 'spec' });
      const many = list(obj.specs, 'specs');
      for (const [i, s] of (many ?? []).entries()) specs.push({ spec: s, where: `specs[${i}]` });
      if (specs.length === 0) throw new VerdictError('VERDICT_POLICY_INVALID', 'has neither spec nor specs');
      rules = specs.map((s) => ciliumRule(s.spec, s.where, policyKind, namespace, warnings));
    } else {
      rules = [k8sRule(obj.spec, namespace)];
    }
    warnings.push(...unknownFields(obj, isCilium ? CILIUM_POLICY : K8S_NETWORK_POLICY));
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
      ...(opts.line ? { line: opts.line } : {}),
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
      // Editors on Windows save UTF-8 with a byte-order mark, which JSON.parse refuses (YAML skips it).
      return { docs: [{ value: JSON.parse(text.replace(/^\uFEFF/, '')) as unknown, line: 1 }], errors: [] };
    } catch (e) {
      return { docs: [], errors: [makeError(path, '', `not valid JSON (${(e as Error).message})`, undefined, FIX_JSON)] };
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
      const col = e.linePos?.[0]?.col;
      const meta = doc.contents && 'get' in doc.contents ? (doc.toJS() as Obj | null)?.metadata : undefined;
      const name = isObj(meta) && typeof meta.name === 'string' ? meta.name : '';
      // The library ends its first line with "at line L, column C:"; the line leads the message already.
      const what = e.message
        .split('\n')[0]!
        .replace(/ at line \d+, column \d+:?$/, '')
        .replace(/:$/, '');
      errors.push(makeError(path, name, `YAML error${col ? ` at column ${col}` : ''}: ${what}`, at, FIX_YAML));
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
            out.errors.push(
              makeError(
                f.path,
                id,
                `defined again (first in ${first})`,
                d.line,
                'this definition is ignored and the first one is used; rename one of them, or remove the copy',
              ),
            );
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

/**
 * Policies of the configuration project's files that the cilium block's `policies` globs select: the agent loads
 * those the server sent with config.yaml, and `verdict config check` those on disk, so both report the same errors
 * and warnings.
 */
export function parseProjectPolicies(files: readonly { path: string; data: Uint8Array }[]): ParseResult {
  return parsePolicyManifests(files.map((f) => ({ path: f.path, data: Buffer.from(f.data) })));
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

/**
 * One line per warning of the given policies, `file:line: kind/namespace/name:
 * field path: what and what to do`, for the agent's log and `verdict replay`.
 */
export function policyWarningMessages(policies: readonly Policy[]): string[] {
  const out: string[] = [];
  for (const p of policies) {
    const where = p.line ? `${p.source}:${p.line}` : p.source;
    for (const w of p.warnings) out.push(`${where}: ${policyId(p)}: ${w}`);
  }
  return out;
}
