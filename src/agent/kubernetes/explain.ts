import { errText } from '../../shared/log/logger.js';
import { kubeApiStatus } from './errors.js';

// What went wrong talking to the Kubernetes API server, in words that say what
// to fix, for every module that talks to it (the Cilium policy watch, GitOps,
// the CI tunnel): the server's address and where the credentials come from are
// named, since a wrong port, token or CA is in the kubeconfig (or the pod's
// service account), not in Verdict's configuration. 401 is authentication (the
// credentials), 403 authorization (RBAC, which each module grants differently).

/** The API server as the agent reaches it (a KubeConnection fits). */
export interface KubeTarget {
  /** https://host:port */
  readonly server: string;
  /** Where the credentials come from: "in-cluster service account" or "kubeconfig <file> (context <name>)". */
  readonly source?: string;
}

// Node's codes for a certificate the agent cannot verify against the cluster's CA, or that names another host.
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function codeOf(e: unknown): string | undefined {
  for (let x = e, depth = 0; x && typeof x === 'object' && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const c = (x as { code?: unknown }).code;
    if (typeof c === 'string') return c;
  }
  return undefined;
}

function credentials(to: KubeTarget): string {
  return to.source ? ` (credentials: ${to.source})` : '';
}

/**
 * `e` explained for a log line or an answer: 401 names the credentials to fix, 403 adds `rbac` (what the module
 * needs and which ClusterRole grants it), a connection or certificate failure names the address and the CA to check;
 * `from` is where the API server must be reachable from.
 * Anything else is its message as it is.
 */
export function explainKubeError(e: unknown, to: KubeTarget, rbac: string, from = "the agent's pod"): string {
  const status = kubeApiStatus(e);
  if (status === 401)
    return `the Kubernetes API server at ${to.server} did not accept the credentials${credentials(to)}: ${errText(e)}; the token or client certificate is wrong, expired or revoked: give valid ones (this is authentication, not RBAC)`;
  if (status === 403) return `${errText(e)}; ${rbac}`;
  if (status !== undefined) return errText(e);
  const code = codeOf(e);
  // System errors (ECONNREFUSED, EAI_AGAIN: a DNS hiccup) and Node's HTTP parser's (HPE_*: not an HTTP server there).
  if (code && (TLS_CODES.has(code) || /^(E[A-Z_]+|HPE_[A-Z_]+)$/.test(code))) return explainNoAnswer(e, to, from);
  return errText(e);
}

/**
 * A request the API server did not answer (no HTTP status), explained: a certificate the agent cannot verify names
 * the CA to check, anything else the address and where it must be reachable from.
 */
export function explainNoAnswer(e: unknown, to: KubeTarget, from = "the agent's pod"): string {
  const code = codeOf(e);
  if (code && TLS_CODES.has(code))
    return `cannot verify the certificate of the Kubernetes API server at ${to.server}${credentials(to)}: ${errText(e)}; the cluster's CA (certificate-authority or certificate-authority-data in a kubeconfig, ca.crt of a service account) must be the one that signed the API server's certificate, and the server address a name the certificate holds`;
  return `cannot reach the Kubernetes API server at ${to.server}${credentials(to)}: ${errText(e)}; check that the API server is up and reachable from ${from}, and that this is its address`;
}
