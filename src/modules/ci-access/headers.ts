import type { HeaderValues } from '../../gen/verdict/kubernetes_api.js';

// HTTP headers as they cross the tunnel (name → values, names lower-case),
// and the ones no hop may pass on: RFC 9110's connection-specific headers,
// and the caller's credentials, which are for the server alone.

export type HeaderMap = { [name: string]: HeaderValues };

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Headers from Node's rawHeaders, without hop-by-hop ones (kept for an upgrade: connection and upgrade) and without `drop`. */
export function headersFromRaw(raw: readonly string[], opts: { upgrade?: boolean; drop?: ReadonlySet<string> } = {}): HeaderMap {
  const out: HeaderMap = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (opts.drop?.has(name)) continue;
    if (HOP_BY_HOP.has(name) && !(opts.upgrade && (name === 'connection' || name === 'upgrade'))) continue;
    (out[name] ??= { values: [] }).values.push(raw[i + 1]!);
  }
  return out;
}

/** For Node's writeHead and request(): one value as a string, several as an array (set-cookie, warning). */
export function headersToNode(h: HeaderMap): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) out[k] = v.values.length === 1 ? v.values[0]! : v.values;
  return out;
}

/** Raw header lines for a response written to a socket (an upgrade, or a refusal of one). */
export function headerLines(h: Record<string, string | string[] | number>): string {
  let s = '';
  for (const [k, v] of Object.entries(h)) for (const x of Array.isArray(v) ? v : [v]) s += `${k}: ${x}\r\n`;
  return s;
}
