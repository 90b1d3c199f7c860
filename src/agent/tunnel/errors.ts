import * as grpc from '@grpc/grpc-js';
import type { KasAddress } from './kas-address.js';
import { AGENT_WS_PATH, SERVER_SHUTTING_DOWN } from '../../shared/agent-api.js';

// Log text for failed calls and connections, with the fix for the cases
// operators meet most: the troubleshooting table of the original (no such host,
// missing slash, scheme mismatch, unknown CA, revoked token) plus rate limits
// and version mismatches.

/** A dial's error as text, with its code (ECONNREFUSED, ENOTFOUND) when the message leaves it out: explainTransportError matches on it. */
export function dialErrorText(e: Error & { code?: string }): string {
  return e.code && !e.message.includes(e.code) ? `${e.message} (${e.code})` : e.message;
}

/** Explains a connection-level failure text (from grpc-js or the WebSocket dial); undefined when nothing specific applies. */
export function explainTransportError(text: string, a: KasAddress): string | undefined {
  const ws = a.scheme === 'ws' || a.scheme === 'wss';
  const tls = a.scheme === 'grpcs' || a.scheme === 'wss';
  if (/ENOTFOUND|EAI_AGAIN|Name resolution failed|getaddrinfo/i.test(text)) return `no such host for --kas-address ${a.raw}: ${text}`;
  if (/ECONNREFUSED/.test(text)) return `connection refused by ${a.raw}: is the server running and is --kas-address right? (${text})`;
  if (
    /unable to verify the first certificate|self[- ]signed certificate|unable to get local issuer certificate|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT/i.test(
      text,
    )
  ) {
    return `the server's certificate at ${a.target} is not signed by a CA the agent trusts (${text}); pass the CA certificate that signed it with --ca-cert-file`;
  }
  if (/certificate has expired|CERT_HAS_EXPIRED/i.test(text))
    return `the server's certificate at ${a.target} has expired (${text}); renew it on the server (tls.cert_file)`;
  if (/altnames|ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate/i.test(text)) {
    return `the server's certificate is not valid for "${a.host}" (${text}); use a host name in --kas-address that the certificate names`;
  }
  if (tls && /wrong version number|packet length too long|unknown protocol|http request|WRONG_VERSION_NUMBER/i.test(text)) {
    return `${a.target} does not speak TLS (${text}); use ${ws ? 'ws' : 'grpc'}:// for it, or configure tls on the server`;
  }
  if (ws && /Expected HTTP\/|HPE_INVALID_CONSTANT|Parse Error/i.test(text)) {
    return `${a.target} did not answer HTTP/1.1 (${text}): it is probably the server's gRPC port; use grpc${tls ? 's' : ''}://${a.target} for that port, or point ${a.scheme}:// at the server's HTTP address (--http-addr) with the path ${AGENT_WS_PATH}`;
  }
  if (!ws && tls && /no application protocol/i.test(text)) {
    return `${a.target} does not serve gRPC (${text}): it is probably the server's HTTP port; use wss://${a.target}${AGENT_WS_PATH} for that port, or point grpcs:// at the server's gRPC address (--grpc-addr)`;
  }
  if (!ws && /Protocol error/i.test(text)) {
    return `${a.target} answered with HTTP/1.1, not gRPC (${text}): it is probably the server's HTTP port; use ${tls ? 'wss' : 'ws'}://${a.target}${AGENT_WS_PATH} for that port, or point ${a.scheme}:// at the server's gRPC address (--grpc-addr)`;
  }
  if (!tls && /socket hang up|ECONNRESET|Failed to connect|Connection closed/i.test(text)) {
    return `${a.target} closed the connection before ${ws ? 'the WebSocket handshake' : 'gRPC'} completed (${text}); if the server serves TLS there, use ${ws ? 'wss' : 'grpcs'}://`;
  }
  return undefined;
}

/**
 * A call the server ended because it is going away cleanly (a replica shut down or restarted): it ended the
 * agent's calls with UNAVAILABLE and SERVER_SHUTTING_DOWN, or its connection sent GOAWAY. Such an end is logged at
 * info: the agent reconnects after its backoff, to the server or, with several --kas-address values, another. A
 * CANCELLED "Call cancelled" is not one: a proxy or load balancer resetting the stream looks the same.
 */
export function isServerShutdown(err: unknown): boolean {
  const e = err as { code?: number; details?: string } | undefined;
  return e?.code === grpc.status.UNAVAILABLE && (e.details === SERVER_SHUTTING_DOWN || /GOAWAY/i.test(e.details ?? ''));
}

/** The cause inside grpc-js's "No connection established. Last error: … Resolution note: …". */
function coreDetails(details: string): string {
  const m = /Last error: (?:Error: )?([\s\S]*?)\s*(?:\(\d{4}-\d\d-\d\dT[^)]*\))?\.?\s*Resolution note:/.exec(details);
  return (m ? m[1]! : details).trim();
}

/**
 * Log text for a failed call. transportError is the last failure of the
 * WebSocket dial, which grpc-js cannot see (it only sees the local end close).
 */
export function describeCallError(err: unknown, address: KasAddress, transportError?: string): string {
  const e = err as Partial<grpc.ServiceError> & { message?: string };
  const details = coreDetails(e.details ?? e.message ?? String(err));
  switch (e.code) {
    case grpc.status.UNAUTHENTICATED:
      return `Unauthenticated: ${e.details ?? 'the server refused the agent token'}`;
    case grpc.status.RESOURCE_EXHAUSTED:
      // grpc-js's own size limits share the code with the server's rate limits.
      if (/^Attempted to send message with a size larger than/.test(details)) {
        return `the agent did not send a message larger than its own gRPC send limit (${details}); this is not a rate limit of the server. The agent keeps its messages below that limit, so report this as a Verdict bug, with this line`;
      }
      if (/^Received message (?:that decompresses to a size )?larger than/.test(details)) {
        return `a message between the agent and the server was over the gRPC message size limit of the side receiving it (${details}); this is not a rate limit. Run the same Verdict release on agent and server, which share the 10 MiB limit`;
      }
      return `rate limited by the server: ${details}`;
    case grpc.status.UNAVAILABLE:
      if (transportError) return transportError;
      // grpc-js uses a connection only once the server sent its HTTP/2 settings, so a call it ends with a bare
      // "Connection dropped" had reached a server that speaks gRPC there: no scheme or TLS mismatch, the
      // server went away (a connection that never got that far fails with "No connection established").
      if (/^Connection dropped$/i.test((e.details ?? '').trim())) {
        return `${address.target} closed the connection (Connection dropped): the server restarted or crashed, or a proxy between closed it; the agent reconnects`;
      }
      return explainTransportError(details, address) ?? `server unavailable at ${address.raw}: ${details}`;
    case grpc.status.FAILED_PRECONDITION:
      return details || 'failed precondition';
    default:
      return details;
  }
}
