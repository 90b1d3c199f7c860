import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gunzipSync, inflateSync } from 'node:zlib';
import type { Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import { MAX_BODY_BYTES_CAP } from './config.js';
import { OddFieldsLog } from './odd-fields.js';
import { parseFalcoJson } from './parse.js';
import { falcoEvents } from './events.js';
import type { FalcoSink } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';
import { isVerdictError } from '../../shared/errors.js';
import { isSpoolFull } from '../../agent/spool/spool.js';
import { splitHostPort } from '../../shared/config/host-port.js';
import { listenError } from '../../shared/config/listen-error.js';

// What Falco's http_output and Falcosidekick's webhook clients post to: one
// JSON event per request. Falco does not retry and libcurl gives up after a few
// timeouts, so the answer must come fast: the request waits only for its raw
// body to be appended to the inbox file, in one write shared by all requests
// of its event-loop turn (sink.ts, inbox.ts), never for the alert or any delivery.
// While the agent's alert spool is full the answer is 503 with Retry-After
// instead: the event would wait behind alerts the server has not acknowledged.

export interface FalcoHttpOptions {
  listen: string;
  maxBodyBytes: number;
  tls?: { cert_file: string; key_file: string; client_ca_file?: string | undefined } | undefined;
  builder: FalcoAlertBuilder;
  sink: FalcoSink;
  log: Logger;
  /** Clock of the refusal warnings' rate limit (tests). */
  now?: () => number;
}

export interface FalcoHttpInput {
  /** host:port actually bound (port 0 resolved). */
  address: string;
  port: number;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/json';
const BODY_QUEUED = Buffer.from('{"status":"queued"}');
const BODY_DUPLICATE = Buffer.from('{"status":"duplicate"}');
const BODY_HEALTHY = Buffer.from('{"status":"ok"}');
const BODY_IGNORED = Buffer.from('{"status":"ignored"}');

function readPem(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read falco.http.tls.${key} ${path}: ${(e as Error).message}; mount the file into the agent or remove the tls block`);
  }
}

/** Why a request was refused: each has its own rate limit, so one cause cannot hide another. */
type Refusal = 'text' | 'invalid' | 'encoding' | 'too_large' | 'unsupported_encoding';

// Falco's http_output logs only failures of libcurl, never an HTTP 4xx, so an
// event refused here would leave no trace but a counter: the agent says it,
// at most once a minute per cause, with how many it held back meanwhile.
class RefusalLog {
  private readonly throttles = new Map<Refusal, LogThrottle>();

  constructor(
    private readonly log: Logger,
    private readonly now: (() => number) | undefined,
  ) {}

  /** Answers the refusal, counts it and logs it (rate-limited). */
  refuse(res: ServerResponse, kind: Refusal, status: number, reason: string, o: { headers?: Record<string, string>; body?: Buffer } = {}): void {
    count.invalid.inc();
    this.log1(kind, status, reason, o.body);
    sendError(res, status, reason, o.headers);
  }

  private log1(kind: Refusal, status: number, reason: string, body: Buffer | undefined): void {
    let t = this.throttles.get(kind);
    if (!t) this.throttles.set(kind, (t = new LogThrottle(60_000, this.now)));
    const suppressed = t.pass();
    if (suppressed === undefined) return;
    if (kind === 'text') {
      this.log.warn(
        { status, reason, body: body?.subarray(0, 200).toString('utf8'), suppressed },
        'Refused Falco events posted over HTTP as text, not JSON; set json_output: true in falco.yaml (Falco does not log the refusal: until then its events are lost)',
      );
    } else {
      this.log.warn(
        { status, reason, suppressed },
        'Refused a Falco event posted over HTTP; Falco does not log the refusal, so such events are lost until the sender is fixed as the reason says',
      );
    }
  }
}

/** Whether a body that failed to parse looks like Falco's text output (json_output: false). */
function looksLikeText(body: Buffer, contentType: string | undefined): boolean {
  if (contentType?.toLowerCase().startsWith('text/plain')) return true;
  const first = body.toString('utf8', 0, 64).trimStart()[0];
  return first !== undefined && first !== '{' && first !== '[';
}

export async function startFalcoHttpInput(opts: FalcoHttpOptions): Promise<FalcoHttpInput> {
  // The config validated the address (hostPort): a bad one here is a caller's bug, not a user's.
  const { host, port } = splitHostPort(opts.listen);
  const refusals = new RefusalLog(opts.log, opts.now);
  const odd = new OddFieldsLog('http', opts.log, opts.now);
  const handler = (req: IncomingMessage, res: ServerResponse) => handle(req, res, opts, refusals, odd);
  let server: Server;
  if (opts.tls) {
    const ca = opts.tls.client_ca_file ? readPem(opts.tls.client_ca_file, 'client_ca_file') : undefined;
    server = createHttpsServer(
      {
        cert: readPem(opts.tls.cert_file, 'cert_file'),
        key: readPem(opts.tls.key_file, 'key_file'),
        ...(ca ? { ca, requestCert: true, rejectUnauthorized: true } : {}),
      },
      handler,
    );
  } else {
    server = createHttpServer(handler);
  }
  // Bounds what a stalled or hostile client can hold; Falco posts small bodies quickly.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(listenError('for Falco events', opts.listen, e, 'falco.http.listen'));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (e) => opts.log.error({ error: e.message }, 'Falco HTTP input error'));
  server.on('tlsClientError', (e: Error) => opts.log.debug({ error: e.message }, 'Refused a TLS client (no or untrusted client certificate?)'));
  const addr = server.address() as AddressInfo;
  const address = addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
  opts.log.info({ address, tls: Boolean(opts.tls), mutual_tls: Boolean(opts.tls?.client_ca_file) }, 'Listening for Falco events over HTTP');
  return {
    address,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Requests in flight get their answer first: their commit is at most a tick away.
        setTimeout(() => server.closeAllConnections(), 1_000).unref();
      }),
  };
}

// Answers are built once: the same header object and body buffer for every request.
const HEADERS_JSON = (body: Buffer) => ({ 'content-type': JSON_TYPE, 'content-length': body.length });
const HEAD_QUEUED = HEADERS_JSON(BODY_QUEUED);
const HEAD_DUPLICATE = HEADERS_JSON(BODY_DUPLICATE);
const HEAD_HEALTHY = HEADERS_JSON(BODY_HEALTHY);
const HEAD_IGNORED = HEADERS_JSON(BODY_IGNORED);

// Accepted and duplicate events are counted by the sink, once per transaction.
const count = {
  ignored: falcoEvents.labels('http', 'ignored'),
  below_minimum_priority: falcoEvents.labels('http', 'below_minimum_priority'),
  invalid: falcoEvents.labels('http', 'invalid'),
};

function sendFixed(res: ServerResponse, status: number, head: Record<string, string | number>, body: Buffer): void {
  if (res.headersSent) return;
  res.writeHead(status, head);
  res.end(body);
}

function send(res: ServerResponse, status: number, body: Buffer, extra?: Record<string, string>): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': body.length, ...extra });
  res.end(body);
}

function sendError(res: ServerResponse, status: number, message: string, extra?: Record<string, string>): void {
  send(res, status, Buffer.from(JSON.stringify({ error: message })), extra);
}

function handle(req: IncomingMessage, res: ServerResponse, opts: FalcoHttpOptions, refusals: RefusalLog, odd: OddFieldsLog): void {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  if (path === '/healthz') {
    if (req.method === 'GET' || req.method === 'HEAD') return sendFixed(res, 200, HEAD_HEALTHY, BODY_HEALTHY);
    return sendError(res, 405, 'use GET /healthz', { allow: 'GET, HEAD' });
  }
  // Any path takes events: Falco's http_output.url and Falcosidekick's
  // webhook.address are free text (`/falco/`, `/webhook`, `/api/events` all
  // occur), Falco never logs a 4xx, and a path the agent refused would lose
  // every event unnoticed. The body itself must still be a Falco event.
  if (req.method !== 'POST') {
    req.resume();
    return sendError(res, 405, 'POST Falco events as JSON (to / or /falco, or any other path); GET /healthz for health', { allow: 'POST' });
  }
  const max = opts.maxBodyBytes;
  const tooLarge = () => {
    // The rest of an oversized body is not worth reading; close the connection.
    res.once('finish', () => req.destroy());
    const reason =
      max >= MAX_BODY_BYTES_CAP
        ? `the body is over ${max} bytes, the largest size the agent accepts; shorten the output of the Falco rule (its output fields) that makes events this large`
        : `the body is over ${max} bytes; raise falco.http.max_body_bytes if Falco events really are that large`;
    refusals.refuse(res, 'too_large', 413, reason, { headers: { connection: 'close' } });
  };
  const declared = Number(req.headers['content-length']);
  if (declared > max) return tooLarge();
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip' && encoding !== 'x-gzip' && encoding !== 'deflate') {
    req.resume();
    const reason = `Content-Encoding ${encoding} is not supported; send gzip or uncompressed JSON`;
    return refusals.refuse(res, 'unsupported_encoding', 415, reason);
  }

  const chunks: Buffer[] = [];
  let size = 0;
  let aborted = false;
  req.on('data', (c: Buffer) => {
    if (aborted) return;
    size += c.length;
    if (size > max) {
      aborted = true;
      return tooLarge();
    }
    chunks.push(c);
  });
  req.on('error', () => {
    aborted = true;
  });
  req.on('end', () => {
    if (aborted) return;
    let body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
    if (encoding !== 'identity') {
      try {
        body = encoding === 'deflate' ? inflateSync(body, { maxOutputLength: max }) : gunzipSync(body, { maxOutputLength: max });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || e instanceof RangeError) return tooLarge();
        const reason = `the body is not valid ${encoding} data (${(e as Error).message}); send Content-Encoding: ${encoding} only with a body compressed whole, or send the JSON uncompressed`;
        return refusals.refuse(res, 'encoding', 400, reason);
      }
    }
    accept(body, req.headers['content-type'], res, opts, refusals, odd);
  });
}

function accept(body: Buffer, contentType: string | undefined, res: ServerResponse, opts: FalcoHttpOptions, refusals: RefusalLog, odd: OddFieldsLog): void {
  let ev;
  try {
    ev = parseFalcoJson(body.toString('utf8'));
  } catch (e) {
    let reason = isVerdictError(e, 'VERDICT_FALCO_EVENT_INVALID') ? e.message : String(e);
    // JSON.parse's words for a second event after the first (two events in one body).
    if (/after JSON at position/.test(reason)) reason += "; send one event per POST (Falco's http_output sends one per request)";
    return refusals.refuse(res, reason.startsWith('invalid JSON') && looksLikeText(body, contentType) ? 'text' : 'invalid', 400, reason, { body });
  }
  odd.note(ev);
  const skipped = opts.builder.skipReason(ev);
  if (skipped) {
    count[skipped].inc();
    return sendFixed(res, 200, HEAD_IGNORED, BODY_IGNORED);
  }
  // Answered once the body is stored; the alert is made from it right after.
  opts.sink.accept(ev, body, (e, outcome) => {
    if (e) {
      // A full spool waits for the server (an outage, not a burst): a longer pause before the retry.
      if (isVerdictError(e, 'VERDICT_OVERLOADED')) return sendError(res, 503, e.message, { 'retry-after': isSpoolFull(e) ? '10' : '1' });
      return sendError(res, 503, `the agent could not store the event (${e.message}); check the agent's disk and logs`);
    }
    if (outcome === 'duplicate') return sendFixed(res, 200, HEAD_DUPLICATE, BODY_DUPLICATE);
    sendFixed(res, 200, HEAD_QUEUED, BODY_QUEUED);
  });
}
