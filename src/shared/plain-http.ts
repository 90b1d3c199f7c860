// kubectl (client-go) sends its bearer token only over TLS, so every request
// it makes to a plain-HTTP Kubernetes API proxy arrives without credentials
// and is refused. The proxy's refusal, the server's warning at start and
// `verdict kubeconfig` say so in these words, each naming what the user can
// change where they are.

/** Whether kubectl reaches `url` over plain HTTP, and so sends no bearer token to it. */
export function isPlainHttpUrl(url: string): boolean {
  return url.startsWith('http://');
}

/**
 * Why kubectl's requests to `target` (e.g. "this listener", "the server http://…")
 * are refused as "no credentials", and what to do; `proxyFix` says how to name a
 * TLS proxy in front of it where the reader is (e.g. "set kubernetes_api.url to").
 */
export function plainHttpHint(target: string, proxyFix: string): string {
  return `${target} is plain HTTP, and kubectl sends no bearer token over it, so every request is refused as "no credentials"; give the Verdict server a tls block, or ${proxyFix} the https:// URL of a proxy that terminates TLS in front of it`;
}
