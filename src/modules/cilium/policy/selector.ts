import { type LabelSet, NS_LABEL, NS_LABELS_PREFIX } from './labels.js';
import { VerdictError } from '../../../shared/errors.js';

// Kubernetes label selectors with Cilium's label sources. Every requirement is
// an exact comparison of key and value (the original matcher compared
// substrings). Keys may carry a source (`k8s:app`, `reserved:host`); without
// one they mean `any:` and match a label of any source.

export type Op = 'eq' | 'in' | 'notin' | 'exists' | 'dne';

export interface Requirement {
  readonly op: Op;
  readonly source: string; // 'any', 'k8s', 'reserved', ...
  readonly key: string;
  /** eq: one value; in/notin: the set */
  readonly values: readonly string[];
}

export class Selector {
  private readonly sets: (ReadonlySet<string> | null)[];
  constructor(readonly reqs: readonly Requirement[]) {
    this.sets = reqs.map((r) => ((r.op === 'in' || r.op === 'notin') && r.values.length > 4 ? new Set(r.values) : null));
  }

  get isEmpty(): boolean {
    return this.reqs.length === 0;
  }

  matches(ls: LabelSet): boolean {
    const reqs = this.reqs;
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i]!;
      switch (r.op) {
        case 'eq': {
          const vs = ls.values(r.source, r.key);
          if (vs === undefined || !vs.includes(r.values[0]!)) return false;
          break;
        }
        case 'in': {
          const vs = ls.values(r.source, r.key);
          if (vs === undefined || !this.anyIn(i, vs)) return false;
          break;
        }
        case 'notin': {
          const vs = ls.values(r.source, r.key);
          if (vs !== undefined && this.anyIn(i, vs)) return false;
          break;
        }
        case 'exists':
          if (!ls.has(r.source, r.key)) return false;
          break;
        case 'dne':
          if (ls.has(r.source, r.key)) return false;
          break;
      }
    }
    return true;
  }

  private anyIn(i: number, vs: readonly string[]): boolean {
    const set = this.sets[i];
    const values = this.reqs[i]!.values;
    for (const v of vs) if (set ? set.has(v) : values.includes(v)) return true;
    return false;
  }

  with(...more: Requirement[]): Selector {
    return new Selector([...this.reqs, ...more]);
  }

  hasSource(source: string): boolean {
    return this.reqs.some((r) => r.source === source);
  }

  /** A requirement on `key` from the k8s source or from any source. */
  hasK8sKey(pred: (key: string) => boolean): boolean {
    return this.reqs.some((r) => (r.source === 'k8s' || r.source === 'any') && pred(r.key));
  }

  toString(): string {
    if (this.reqs.length === 0) return '{}';
    return this.reqs
      .map((r) => {
        const k = r.source === 'any' ? r.key : `${r.source}:${r.key}`;
        switch (r.op) {
          case 'eq':
            return `${k}=${r.values[0]}`;
          case 'in':
            return `${k} in (${r.values.join(',')})`;
          case 'notin':
            return `${k} notin (${r.values.join(',')})`;
          case 'exists':
            return k;
          case 'dne':
            return `!${k}`;
        }
        return k;
      })
      .join(',');
  }
}

export const EMPTY_SELECTOR = new Selector([]);

/**
 * `k8s:app` -> {k8s, app}; `app` -> {any, app}. Label keys cannot contain a
 * colon. As in Cilium's label parser, `$host` and `reserved.host` (no colon)
 * are short forms of `reserved:host`.
 */
export function splitSourceKey(text: string, defaultSource = 'any'): { source: string; key: string } {
  if (text.startsWith('$') && text.length > 1) return { source: 'reserved', key: text.slice(1) };
  const i = text.indexOf(':');
  if (i > 0) return { source: text.slice(0, i), key: text.slice(i + 1) };
  if (text.startsWith('reserved.') && text.length > 9) return { source: 'reserved', key: text.slice(9) };
  return { source: defaultSource, key: text };
}

function scalar(v: unknown, where: string): string {
  if (typeof v === 'string') return v;
  // YAML turns `version: 2` or `enabled: true` into non-strings; Kubernetes would reject them, the intent is clear.
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (v === null) return '';
  throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a string, got ${Array.isArray(v) ? 'a list' : typeof v}`);
}

const OPS: Readonly<Record<string, Op>> = { in: 'in', notin: 'notin', exists: 'exists', doesnotexist: 'dne' };

/**
 * Compiles a Kubernetes LabelSelector object. `forceSource` is for Kubernetes
 * NetworkPolicy, whose keys are always Kubernetes labels.
 */
export function compileSelector(obj: unknown, where: string, forceSource?: string): Selector {
  if (obj === undefined || obj === null) return EMPTY_SELECTOR;
  if (typeof obj !== 'object' || Array.isArray(obj))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: a label selector must be an object with matchLabels and/or matchExpressions`);
  const o = obj as Record<string, unknown>;
  const reqs: Requirement[] = [];
  const sk = (k: string) => (forceSource ? { source: forceSource, key: k } : splitSourceKey(k));
  if (o.matchLabels !== undefined && o.matchLabels !== null) {
    if (typeof o.matchLabels !== 'object' || Array.isArray(o.matchLabels))
      throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.matchLabels: expected a map of label key to value`);
    for (const [k, v] of Object.entries(o.matchLabels as Record<string, unknown>)) {
      if (k === '') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.matchLabels: empty label key`);
      reqs.push({ op: 'eq', ...sk(k), values: [scalar(v, `${where}.matchLabels.${k}`)] });
    }
  }
  if (o.matchExpressions !== undefined && o.matchExpressions !== null) {
    if (!Array.isArray(o.matchExpressions)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.matchExpressions: expected a list`);
    o.matchExpressions.forEach((e: unknown, i: number) => {
      const w = `${where}.matchExpressions[${i}]`;
      if (typeof e !== 'object' || e === null) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: expected {key, operator, values}`);
      const ex = e as Record<string, unknown>;
      if (typeof ex.key !== 'string' || ex.key === '') throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.key: required`);
      // Upstream examples write `operator: "in"`; Cilium accepts any case.
      const op = OPS[String(ex.operator ?? '').toLowerCase()];
      if (!op) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.operator: "${String(ex.operator)}" is not one of In, NotIn, Exists, DoesNotExist`);
      const values = ex.values === undefined || ex.values === null ? [] : ex.values;
      if (!Array.isArray(values)) throw new VerdictError('VERDICT_POLICY_INVALID', `${w}.values: expected a list`);
      const vals = values.map((v, j) => scalar(v, `${w}.values[${j}]`));
      if ((op === 'in' || op === 'notin') && vals.length === 0)
        throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: operator ${String(ex.operator)} needs at least one value`);
      if ((op === 'exists' || op === 'dne') && vals.length > 0)
        throw new VerdictError('VERDICT_POLICY_INVALID', `${w}: operator ${String(ex.operator)} takes no values`);
      reqs.push({ op, ...sk(ex.key), values: vals });
    });
  }
  return new Selector(reqs);
}

const nsReq = (ns: string): Requirement => ({ op: 'eq', source: 'k8s', key: NS_LABEL, values: [ns] });
const nsExists: Requirement = { op: 'exists', source: 'k8s', key: NS_LABEL, values: [] };

/** The subject of a namespaced policy is always limited to the policy's namespace. */
export function scopeSubject(sel: Selector, namespace: string): Selector {
  return namespace === '' ? sel : sel.with(nsReq(namespace));
}

/**
 * Peers (from/toEndpoints, from/toRequires) as Cilium scopes them: reserved
 * selectors stay as written; a selector naming the pod namespace stays as
 * written; otherwise a namespaced policy limits the peer to its own namespace
 * unless the selector names namespace labels, and a clusterwide policy limits
 * it to pods (namespace label present).
 */
export function scopePeer(sel: Selector, namespace: string, subjectMatchesInit = false): Selector {
  if (sel.hasSource('reserved')) return sel;
  if (sel.hasK8sKey((k) => k === NS_LABEL)) return sel;
  // Init endpoints have no labels yet, so no namespace label either.
  if (subjectMatchesInit) return sel;
  if (namespace === '') return sel.with(nsExists);
  if (sel.hasK8sKey((k) => k.startsWith(NS_LABELS_PREFIX))) return sel;
  return sel.with(nsReq(namespace));
}

/**
 * Kubernetes NetworkPolicy peer: podSelector and namespaceSelector in one peer
 * are AND-ed. namespaceSelector keys are namespace labels, which Cilium puts on
 * each pod as `io.cilium.k8s.namespace.labels.<key>`.
 */
export function k8sPeerSelector(podSelector: Selector | undefined, namespaceSelector: Selector | undefined, policyNamespace: string): Selector {
  const reqs: Requirement[] = [];
  if (podSelector) reqs.push(...podSelector.reqs);
  if (namespaceSelector) {
    for (const r of namespaceSelector.reqs) reqs.push({ ...r, source: 'k8s', key: NS_LABELS_PREFIX + r.key });
    reqs.push(nsExists);
  } else {
    reqs.push(nsReq(policyNamespace));
  }
  return new Selector(reqs);
}

/** Index keys: one exact `key=value` requirement, or failing that an In list or an Exists key. */
export function selectorAnchor(sel: Selector): { kind: 'eq'; keys: string[] } | { kind: 'exists'; key: string } | null {
  const usable = sel.reqs.filter((r) => r.key !== NS_LABEL);
  const eq = usable.find((r) => r.op === 'eq');
  if (eq) return { kind: 'eq', keys: [`${eq.key}=${eq.values[0]}`] };
  const inn = usable.find((r) => r.op === 'in');
  if (inn) return { kind: 'eq', keys: inn.values.map((v) => `${inn.key}=${v}`) };
  const ex = usable.find((r) => r.op === 'exists');
  if (ex) return { kind: 'exists', key: ex.key };
  return null;
}
