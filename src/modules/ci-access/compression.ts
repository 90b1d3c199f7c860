import type { ServerResponse } from 'node:http';
import { createGunzip, type Gunzip } from 'node:zlib';
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
 * Makes a plain GET accept gzip when its client did not say what it accepts;
 * true when the proxy must then inflate the answer for that client.
 */
export function acceptGzipFor(method: string, headers: HeaderMap): boolean {
  if (method !== 'GET' || headers['accept-encoding']) return false;
  headers['accept-encoding'] = { values: ['gzip'] };
  return true;
}

/**
 * For a response the proxy must inflate: the headers the client gets (without
 * Content-Encoding, and Content-Length, which counted the compressed bytes),
 * and the stream to write the compressed body to, which writes the inflated
 * body to `res` and ends it. Undefined when the answer is not gzip.
 */
export function inflating(headers: HeaderMap, res: ServerResponse): { headers: HeaderMap; body: Gunzip } | undefined {
  const enc = headers['content-encoding']?.values;
  if (enc?.length !== 1 || enc[0]!.trim().toLowerCase() !== 'gzip') return undefined;
  const { 'content-encoding': _, 'content-length': __, ...rest } = headers;
  // Larger pieces than zlib's 16 KiB: each is a chunk of the HTTP answer and a TLS record to the client.
  const body = createGunzip({ chunkSize: 128 << 10 });
  body.pipe(res);
  return { headers: rest, body };
}
