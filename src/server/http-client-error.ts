import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

// What the feed listener (feed/http-errors.ts) and the Kubernetes API proxy
// listener (modules/ci-access/listener.ts) do with a request Node refuses before
// any route sees it: answer it on the socket, each in its own body form, then close.

/** An answer to a refused request: its status, the headers of its body (Content-Length and Connection are added), the body. */
export interface ClientErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** How long a refused client has to take the answer before its socket is closed regardless. */
const ANSWER_WRITE_MS = 5_000;
const answering = new WeakSet<Duplex>();

/** What writeThenDestroy writes to: a socket, or a response whose connection is to be broken after a last write. */
interface Destroyable {
  write(data: string, done: () => void): unknown;
  end(data: string, done: () => void): unknown;
  destroy(): unknown;
}

/**
 * Writes `data` (ending the stream with it unless `end` is false) and destroys the stream once it is written, not at
 * once: a TLS socket destroyed right after a write drops what it was given before it is encrypted and sent. A client
 * that never reads (its TCP window full) does not hold the stream open: destroyed after ANSWER_WRITE_MS regardless.
 */
export function writeThenDestroy(out: Destroyable, data: string, end = true): void {
  const stop = setTimeout(() => out.destroy(), ANSWER_WRITE_MS);
  stop.unref();
  const done = () => {
    clearTimeout(stop);
    out.destroy();
  };
  if (end) out.end(data, done);
  else out.write(data, done);
}

/**
 * The status for a request Node refused before any route saw it: 431 for headers over the limit, 408 for headers
 * that did not arrive in time, 400 for anything else that is not HTTP/1.1 Node reads. Each listener words its message.
 */
export function clientErrorStatus(err: NodeJS.ErrnoException): 431 | 408 | 400 {
  return err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
}

/**
 * A handler for the server's 'clientError': answers with what `answer` makes of the error, or only closes
 * the socket where an answer cannot be written or would land inside a response already under way.
 */
export function clientErrorAnswerer(answer: (err: NodeJS.ErrnoException) => ClientErrorAnswer) {
  return (err: NodeJS.ErrnoException, socket: Duplex): void => {
    // A reset connection has no one left to answer; one being answered is refused again by the bytes still arriving.
    if (err.code === 'ECONNRESET' || socket.destroyed || answering.has(socket)) return;
    // As Node's own handler: a response whose head is sent (a watch, a large body the client reads slowly) would
    // get a second head in its body, which the client reads as that body. Only closing it tells the truth.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy(err);
      return;
    }
    const { status, headers, body } = answer(err);
    const head = Object.entries({ ...headers, 'Content-Length': String(Buffer.byteLength(body)), Connection: 'close' })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    answering.add(socket);
    writeThenDestroy(socket, `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}\r\n${body}`);
  };
}
