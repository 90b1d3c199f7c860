// What kind of answer a request through the tunnel gets, read from its path
// and query as the API server reads them. A stream (a watch, `logs -f`, or
// whatever a pod, service or node sends behind a `/proxy/` subresource) is
// passed on as it arrives and left as its backend encoded it; an answer read
// whole may be gathered into larger frames and asked for compressed.

export interface AnswerKind {
  /** A watch: its events are JSON lines, and an ERROR event is how a watch says it broke. */
  watch: boolean;
  /** The client reads the body as it comes. */
  stream: boolean;
  /** A `/proxy/` subresource: the answer is a backend's own HTTP, not the API server's. */
  proxied: boolean;
}

// The legacy watch paths: /api/v1/watch/... and /apis/<group>/<version>/watch/...
const WATCH_PATH = /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)\/watch(?:\/|$)/;
const PROXY_PATH = /\/(?:pods|services|nodes)\/[^/]+\/proxy(?:\/|$)/;

export function answerKind(uri: string): AnswerKind {
  const q = uri.indexOf('?');
  const path = q < 0 ? uri : uri.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : uri.slice(q + 1));
  const watch = WATCH_PATH.test(path) || flag(query, 'watch');
  const proxied = PROXY_PATH.test(path);
  return { watch, stream: watch || proxied || flag(query, 'follow'), proxied };
}

/** A boolean query parameter as the API server converts it: present, with any first value but "0" or "false" (in any case), is true. */
function flag(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  return v !== null && v !== '0' && v.toLowerCase() !== 'false';
}
