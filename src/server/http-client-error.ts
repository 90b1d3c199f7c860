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
    // Closed once the answer is written, not at once: a TLS socket destroyed right
    // after a write drops the answer before it is encrypted and sent. A client that
    // never reads does not hold the socket open.
    answering.add(socket);
    const stop = setTimeout(() => socket.destroy(), ANSWER_WRITE_MS);
    stop.unref();
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${head}\r\n${body}`, () => {
      clearTimeout(stop);
      socket.destroy();
    });
  };
}
