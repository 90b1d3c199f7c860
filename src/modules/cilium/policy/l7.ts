import type { HTTPHeader } from '../../../gen/flow/flow.js';
import { VerdictError } from '../../../shared/errors.js';

// L7 rules (HTTP) and DNS names (toFQDNs and DNS rules). Cilium hands HTTP
// rules to Envoy as full-match regular expressions, so `/public` allows the
// path `/public` and nothing longer: every pattern is compiled anchored.

/** Anchored, as Envoy's full match; RE2's leading `(?i)` becomes the `i` flag. */
export function compileAnchored(src: string, where: string): RegExp {
  let body = src;
  let flags = '';
  if (body.startsWith('(?i)')) {
    body = body.slice(4);
    flags = 'i';
  }
  try {
    return new RegExp(`^(?:${body})$`, flags);
  } catch (e) {
    throw new VerdictError(
      'VERDICT_POLICY_INVALID',
      `${where}: "${src}" is not a valid regular expression (${(e as Error).message.replace(/^Invalid regular expression: /, '')})`,
    );
  }
}

export interface HeaderReq {
  readonly name: string; // lower case
  readonly value: string | null;
}

export interface HttpRule {
  readonly method: RegExp | null;
  readonly path: RegExp | null;
  readonly host: RegExp | null;
  readonly headers: readonly HeaderReq[];
}

function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected a string`);
  return v;
}

export function compileHttpRule(o: unknown, where: string): HttpRule {
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected an HTTP rule object {method, path, host, headers}`);
  const r = o as Record<string, unknown>;
  const method = optString(r.method, `${where}.method`);
  const path = optString(r.path, `${where}.path`);
  const host = optString(r.host, `${where}.host`);
  const headers: HeaderReq[] = [];
  if (r.headers !== undefined && r.headers !== null) {
    if (!Array.isArray(r.headers)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.headers: expected a list of "Name" or "Name: value"`);
    r.headers.forEach((h: unknown, i: number) => {
      if (typeof h !== 'string') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.headers[${i}]: expected a string "Name" or "Name: value"`);
      const c = h.indexOf(':');
      headers.push(c < 0 ? { name: h.trim().toLowerCase(), value: null } : { name: h.slice(0, c).trim().toLowerCase(), value: h.slice(c + 1).trim() });
    });
  }
  if (r.headerMatches !== undefined && r.headerMatches !== null) {
    if (!Array.isArray(r.headerMatches)) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.headerMatches: expected a list`);
    r.headerMatches.forEach((h: unknown, i: number) => {
      if (typeof h !== 'object' || h === null) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.headerMatches[${i}]: expected {name, value}`);
      const hm = h as Record<string, unknown>;
      if (typeof hm.name !== 'string' || hm.name === '') throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.headerMatches[${i}].name: required`);
      // With a mismatch action Envoy logs or rewrites instead of denying, so it never drops a request.
      if (hm.mismatch !== undefined && hm.mismatch !== null && hm.mismatch !== '') return;
      // A secret's value is not in the policy; only the header's presence can be checked.
      const value = typeof hm.value === 'string' && hm.secret === undefined ? hm.value : null;
      headers.push({ name: hm.name.toLowerCase(), value });
    });
  }
  return {
    method: method === undefined ? null : compileAnchored(method, `${where}.method`),
    path: path === undefined ? null : compileAnchored(path, `${where}.path`),
    host: host === undefined ? null : compileAnchored(host, `${where}.host`),
    headers,
  };
}

export interface HttpRequest {
  method: string;
  /** Path with the query string, as Envoy's :path header. */
  path: string;
  host: string;
  headers: readonly HTTPHeader[];
}

/** Splits Hubble's `url` (absolute, `http://host:port/path?q`, or just a path). */
export function httpRequestFrom(method: string, url: string, headers: readonly HTTPHeader[]): HttpRequest {
  let host = '';
  let path = url;
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)(.*)$/.exec(url);
  if (m) {
    host = m[1]!;
    path = m[2]!;
  }
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  if (path === '') path = '/';
  if (host === '') host = headers.find((h) => h.key.toLowerCase() === 'host' || h.key === ':authority')?.value ?? '';
  return { method, path, host, headers };
}

export function httpRuleMatches(r: HttpRule, req: HttpRequest): boolean {
  if (r.method && !r.method.test(req.method)) return false;
  if (r.path && !r.path.test(req.path)) return false;
  if (r.host && !r.host.test(req.host)) return false;
  for (const h of r.headers) {
    let ok = false;
    for (const x of req.headers) {
      if (x.key.toLowerCase() === h.name && (h.value === null || x.value === h.value)) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

/** A DNS name rule: matchName (exact) or matchPattern (`*` wildcards). */
export interface NameMatcher {
  readonly text: string;
  readonly exact: string | null;
  readonly re: RegExp | null;
  readonly all: boolean;
}

export function normalizeName(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

const DNS_CHAR = '[-a-zA-Z0-9_]';

export function compileNameMatcher(o: unknown, where: string): NameMatcher {
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: expected {matchName} or {matchPattern}`);
  const r = o as Record<string, unknown>;
  const name = optString(r.matchName, `${where}.matchName`);
  const pattern = optString(r.matchPattern, `${where}.matchPattern`);
  if (name === undefined && pattern === undefined) throw new VerdictError('VERDICT_POLICY_INVALID', `${where}: needs matchName or matchPattern`);
  if (name !== undefined) {
    if (!/^[-a-zA-Z0-9_.]+$/.test(name))
      throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.matchName: "${name}" is not a DNS name (letters, digits, '-', '_' and '.')`);
    return { text: name, exact: normalizeName(name), re: null, all: false };
  }
  const p = normalizeName(pattern!);
  if (!/^[-a-z0-9_.*]+$/.test(p))
    throw new VerdictError('VERDICT_POLICY_INVALID', `${where}.matchPattern: "${pattern}" may hold only letters, digits, '-', '_', '.' and '*'`);
  if (p === '*') return { text: pattern!, exact: null, re: null, all: true };
  // `**.` (Cilium 1.18+) spans several labels; a lone `*` stays within one label.
  let src = '';
  for (let i = 0; i < p.length; i++) {
    if (p.startsWith('**.', i)) {
      src += `(?:${DNS_CHAR}+\\.)+`;
      i += 2;
    } else if (p[i] === '*') src += `${DNS_CHAR}*`;
    else if (p[i] === '.') src += '\\.';
    else src += p[i];
  }
  return { text: pattern!, exact: null, re: new RegExp(`^${src}$`, 'i'), all: false };
}

export function nameMatches(m: NameMatcher, name: string): boolean {
  if (m.all) return true;
  const n = normalizeName(name);
  return m.exact !== null ? m.exact === n : m.re!.test(n);
}
