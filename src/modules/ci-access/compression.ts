import type { ServerResponse } from 'node:http';
import { createGunzip, type Gunzip } from 'node:zlib';
import type { AnswerKind } from './answer-kind.js';
import type { HeaderMap } from './headers.js';

// Lists cross the tunnel compressed, whoever asked for them. The API server
// gzips answers of 128 KiB and more when the request accepts it, as kubectl's
// always do; for a client that does not ask (curl, a script), the proxy asks
// on its behalf and inflates the answer before it reaches the client. The
// agent-to-server leg, often a WAN, then carries a list at a fifteenth or so
// of its size, and server and agent encrypt, frame and parse that much less:
// an uncompressed list of 5,000 ConfigMaps cost them more CPU than the API
// server spent answering it.

/**
 * Makes a plain GET of the API server's own answer read whole (not a stream,
 * not a `/proxy/` backend's HTTP, not a byte range) accept gzip when its
 * client did not say what it accepts; true when the proxy must then inflate
 * the answer for that client.
 */
export function acceptGzipFor(method: string, kind: AnswerKind, headers: HeaderMap): boolean {
  if (method !== 'GET' || kind.stream || kind.proxied || headers['accept-encoding'] || headers.range || headers['if-range']) return false;
  headers['accept-encoding'] = { values: ['gzip'] };
  return true;
}

/**
 * For a response the proxy must inflate (a 200 in gzip): the headers the
 * client gets, and the stream to write the compressed body to, which writes
 * the inflated body to `res` and ends it. Content-Encoding goes, and
 * Content-Length and Accept-Ranges, which spoke of the compressed bytes; a
 * strong ETag, which named them, becomes weak. Undefined for anything else.
 */
export function inflating(status: number, headers: HeaderMap, res: ServerResponse): { headers: HeaderMap; body: Gunzip } | undefined {
  const enc = headers['content-encoding']?.values;
  if (status !== 200 || enc?.length !== 1 || enc[0]!.trim().toLowerCase() !== 'gzip') return undefined;
  const { 'content-encoding': _, 'content-length': __, 'accept-ranges': ___, ...rest } = headers;
  const etag = rest.etag?.values;
  if (etag?.length === 1 && !etag[0]!.startsWith('W/')) rest.etag = { values: [`W/${etag[0]}`] };
  // Larger pieces than zlib's 16 KiB: each is a chunk of the HTTP answer and a TLS record to the client.
  const body = createGunzip({ chunkSize: 128 << 10 });
  body.pipe(res);
  return { headers: rest, body };
}
