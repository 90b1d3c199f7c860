import * as grpc from '@grpc/grpc-js';
import { connect, type Socket } from 'node:net';
import { splitHostPort } from '../../shared/config/host-port.js';
import { encodeHeaders, HpackDecoder } from './hpack.js';

// One gRPC call with a streamed response, over plain-text HTTP/2 (RFC 9113,
// prior knowledge), as Hubble Relay serves GetFlows in the cluster. Written
// for that stream rather than taken from node:http2: there, every DATA frame
// (Relay sends one per flow) went from nghttp2 through a C++ callback and a
// Readable stream's push and 'data' event, and the socket was read as soon
// as anything arrived, a few flows per wake-up, each wake-up an epoll, a read
// and a window update. Here the socket is read into one buffer, its frames
// are taken apart in one loop, and after a read that did not fill the buffer
// the socket rests a few milliseconds, so that under a flood one read
// carries a hundred flows, and a lone flow waits those milliseconds at most.

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const DATA = 0;
const HEADERS = 1;
const RST_STREAM = 3;
const SETTINGS = 4;
const PUSH_PROMISE = 5;
const PING = 6;
const GOAWAY = 7;
const WINDOW_UPDATE = 8;
const CONTINUATION = 9;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
/** The only stream: the call's. */
const STREAM = 1;
/** HTTP/2's default largest frame, which this side keeps (it announces no other). */
const MAX_FRAME = 16_384;
/** Receive window of the stream and of the connection: room for a burst of Relay's flows without waiting for window updates. */
const WINDOW = 4 * 1024 * 1024;
/** The socket's receive buffer; a read takes what is free of it. */
const BUFFER = 256 * 1024;
/** How long the socket rests after a read that did not fill the buffer. */
const REST_MS = 4;
/**
 * Silence before a PING, and the least time between two: grpc-go's servers
 * (Relay's) allow a client one ping per 5 minutes by default and close the
 * connection with ENHANCE_YOUR_CALM after a few more.
 */
const PING_AFTER_MS = 5 * 60_000;
/** How long Relay has, from the connect, to open its side of HTTP/2 (its SETTINGS). */
const ANSWER_MS = 10_000;
/** The largest header block taken (HEADERS and its CONTINUATION frames): gRPC servers send a few hundred bytes. */
const MAX_HEADER_BLOCK = 1024 * 1024;
/** How long a PING may go unanswered before the connection is taken for dead (a half-open TCP connection never ends by itself). */
const PING_ACK_MS = 20_000;

/** HTTP/2's error codes (RFC 9113 section 7), by number. */
const H2_ERRORS = [
  'NO_ERROR',
  'PROTOCOL_ERROR',
  'INTERNAL_ERROR',
  'FLOW_CONTROL_ERROR',
  'SETTINGS_TIMEOUT',
  'STREAM_CLOSED',
  'FRAME_SIZE_ERROR',
  'REFUSED_STREAM',
  'CANCEL',
  'COMPRESSION_ERROR',
  'CONNECT_ERROR',
  'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY',
  'HTTP_1_1_REQUIRED',
];
const h2Error = (code: number) => H2_ERRORS[code] ?? `error ${code}`;

/** Socket errors after which trying again later may work. */
const TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE']);

/** This side's PING payload, told apart from an ACK of someone else's. */
const PING_PAYLOAD = Buffer.from('verdict!');

export interface H2cCall {
  /** host:port, or [IPv6]:port. */
  address: string;
  /** The method's path, /package.Service/Method. */
  path: string;
  /** The request message, serialised (one message, at most a frame's size). */
  request: Uint8Array;
  signal: AbortSignal;
  /**
   * The response's bytes (gRPC's length-prefixed messages, cut anywhere), in
   * order: buf[start, end), overwritten after the call returns. A handler
   * that throws ends the call with that error.
   */
  onData: (buf: Buffer, start: number, end: number) => void;
  /** Timeouts and liveness intervals (the defaults above), made shorter by tests. */
  timing?: Partial<H2cTiming>;
}

export interface H2cTiming {
  /** From the connect until Relay's SETTINGS arrive. */
  answerMs: number;
  /** Silence (nothing received) before a PING is sent; also the least time between two PINGs. */
  pingAfterMs: number;
  /** How long the PING's ACK may take before the call ends. */
  pingAckMs: number;
}

function frameHeader(len: number, type: number, flags: number, stream: number): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(len, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return h;
}

function frame(type: number, flags: number, stream: number, payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(payload.length, type, flags, stream), payload]);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
}

/** What opens the connection and the call: preface, settings, windows, the request's headers and its one message. */
function opening(c: H2cCall): Buffer {
  const msg = Buffer.alloc(5 + c.request.length);
  msg.writeUInt32BE(c.request.length, 1);
  msg.set(c.request, 5);
  if (msg.length > MAX_FRAME) throw new Error(`INTERNAL: a request of ${msg.length} bytes is over one frame`);
  const settings = Buffer.alloc(12);
  // ENABLE_PUSH off; INITIAL_WINDOW_SIZE.
  settings.writeUInt16BE(0x2, 0);
  settings.writeUInt32BE(0, 2);
  settings.writeUInt16BE(0x4, 6);
  settings.writeUInt32BE(WINDOW, 8);
  return Buffer.concat([
    PREFACE,
    frame(SETTINGS, 0, 0, settings),
    // The connection's window starts at 65,535 whatever the settings say.
    frame(WINDOW_UPDATE, 0, 0, u32(WINDOW - 65_535)),
    frame(
      HEADERS,
      END_HEADERS,
      STREAM,
      encodeHeaders([
        [':method', 'POST'],
        [':scheme', 'http'],
        [':path', c.path],
        [':authority', c.address],
        ['content-type', 'application/grpc'],
        ['te', 'trailers'],
        ['user-agent', 'verdict-agent'],
      ]),
    ),
    frame(DATA, END_STREAM, STREAM, msg),
  ]);
}

const get = (fields: readonly [string, string][], name: string) => fields.find((f) => f[0] === name)?.[1];

/** The call's status from trailers (or the headers of a trailers-only response): undefined for OK. */
function grpcStatus(fields: readonly [string, string][]): Error | undefined {
  const status = get(fields, 'grpc-status');
  if (!status || !/^\d+$/.test(status)) return new Error('UNKNOWN: Relay ended the call without a grpc-status');
  const code = Number(status);
  if (code === 0) return undefined;
  let message = get(fields, 'grpc-message') ?? '';
  try {
    message = decodeURIComponent(message);
  } catch {
    // Not percent-encoded as gRPC asks: shown as sent.
  }
  return new Error(`${grpc.status[code] ?? code}: ${message || 'the call failed'}`);
}

/** The setting to check, named as in config.yaml with its value, as the tunnel's errors name --kas-address. */
const checkAddress = (address: string) => `check that cilium.hubble_relay_address (${address}) is Relay's gRPC port`;

/** Why what answered is not Relay's plain-text HTTP/2: `first`, its first bytes, if any, tell what else it speaks. */
function notH2c(first: Buffer, address: string): Error {
  const other = first.toString('latin1', 0, 5) === 'HTTP/' ? ' (it answered in HTTP/1)' : first[0] === 0x15 || first[0] === 0x16 ? ' (it answered in TLS)' : '';
  return new Error(
    `UNAVAILABLE: Relay did not answer in plain-text HTTP/2 (gRPC without TLS)${other}: ${checkAddress(address)} and that Relay serves without TLS`,
  );
}

/** A socket error as the call's error, with what to check when the address itself is the likely fault. */
function socketError(e: NodeJS.ErrnoException, address: string): Error {
  const text = `${TRANSIENT.has(e.code ?? '') ? 'UNAVAILABLE' : 'UNKNOWN'}: ${e.message}`;
  if (e.code === 'ECONNREFUSED')
    return new Error(`${text}: nothing listens there; is Hubble Relay running, and is cilium.hubble_relay_address (${address}) right?`);
  if (e.code === 'ENOTFOUND' || e.code === 'EAI_AGAIN')
    return new Error(
      `${text}: no such host; is cilium.hubble_relay_address (${address}) right? In the cluster it is usually hubble-relay.kube-system.svc.cluster.local:80`,
    );
  return new Error(text);
}

/** Makes the call and follows its response until it ends: resolves with why (undefined for an OK status or an aborted signal). */
export function h2cCall(c: H2cCall): Promise<Error | undefined> {
  return new Promise((resolve) => {
    let settled = false;
    let resting: NodeJS.Timeout | undefined;
    const buf = Buffer.allocUnsafe(BUFFER);
    /** Bytes of a frame not yet whole, at the front of buf. */
    let held = 0;
    const hpack = new HpackDecoder();
    /** A header block arriving in several frames: its fragments, its stream, and whether it ends the stream. */
    let block: Buffer[] | undefined;
    let blockStream = 0;
    let blockEnds = false;
    let answered = false;
    /** Whether Relay's side of the connection began, as HTTP/2 asks, with SETTINGS. */
    let greeted = false;
    let blockBytes = 0;
    /** A graceful GOAWAY's words, for the close that follows it (grpc-go's connection age: "max_age"). */
    let goingAway = '';
    /** Bytes received and not yet given back to the window. */
    let unacked = 0;
    const timing: H2cTiming = { answerMs: ANSWER_MS, pingAfterMs: PING_AFTER_MS, pingAckMs: PING_ACK_MS, ...c.timing };
    // Liveness: set by every read, looked at by a timer, so the DATA path pays one store.
    let heard = false;
    let pingAck: NodeJS.Timeout | undefined;
    const liveness = setInterval(() => {
      if (heard || pingAck) {
        heard = false;
        return;
      }
      socket.write(frame(PING, 0, 0, PING_PAYLOAD));
      pingAck = setTimeout(
        () => finish(new Error(`UNAVAILABLE: Relay did not answer a ping within ${timing.pingAckMs / 1000} s; reconnecting`)),
        timing.pingAckMs,
      );
    }, timing.pingAfterMs);

    const answer = setTimeout(
      () =>
        finish(
          new Error(
            `UNAVAILABLE: Relay did not answer within ${timing.answerMs / 1000} s; ${checkAddress(c.address)} and that Relay is reachable from the agent`,
          ),
        ),
      timing.answerMs,
    );

    const finish = (e?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(answer);
      clearTimeout(resting);
      clearInterval(liveness);
      clearTimeout(pingAck);
      c.signal.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(e);
    };
    const onAbort = () => {
      // CANCEL, so Relay stops sending at once rather than at the closed connection.
      if (!socket.destroyed) socket.write(frame(RST_STREAM, 0, STREAM, u32(0x8)));
      finish();
    };

    const onHeaders = (fields: [string, string][], stream: number, ends: boolean) => {
      // Every block goes through the decoder, whatever its stream: the table is the connection's.
      if (stream !== STREAM) return;
      if (!answered) {
        answered = true;
        const status = get(fields, ':status');
        if (status !== '200') {
          const what = status === undefined ? 'without an HTTP status' : `HTTP ${status}`;
          return finish(new Error(`UNAVAILABLE: Relay answered ${what}; ${checkAddress(c.address)}`));
        }
        const type = get(fields, 'content-type');
        if (!type?.startsWith('application/grpc')) {
          return finish(new Error(`UNAVAILABLE: Relay answered with content-type ${type ?? '(none)'}, not gRPC; ${checkAddress(c.address)}`));
        }
        // A call refused at once (or ended at once) carries its status in the headers: trailers-only.
        if (ends || get(fields, 'grpc-status') !== undefined) finish(grpcStatus(fields));
        return;
      }
      // Trailers: OK ends the call cleanly.
      finish(grpcStatus(fields));
    };

    /** One whole frame, its payload buf[at, end). */
    const onFrame = (type: number, flags: number, stream: number, at: number, end: number) => {
      if (block && type !== CONTINUATION) throw new Error('INTERNAL: a header block was cut by another frame');
      // Control frames of a size HTTP/2 does not allow (RFC 9113 section 6) would be read past their payload.
      const sized = (ok: boolean, name: string) => {
        if (!ok) throw new Error(`INTERNAL: Relay sent a ${name} frame of ${end - at} bytes (HTTP/2 FRAME_SIZE_ERROR)`);
      };
      switch (type) {
        case DATA: {
          unacked += end - at;
          if (flags & PADDED) end -= buf[at++]!;
          if (end < at) throw new Error('INTERNAL: a DATA frame with more padding than payload');
          if (stream === STREAM && end > at) c.onData(buf, at, end);
          if (flags & END_STREAM && stream === STREAM) finish(new Error('UNKNOWN: Relay ended the call without a grpc-status'));
          return;
        }
        case HEADERS: {
          if (flags & PADDED) end -= buf[at++]!;
          if (flags & PRIORITY) at += 5;
          if (end < at) throw new Error('INTERNAL: a HEADERS frame shorter than its padding');
          block = [Buffer.from(buf.subarray(at, end))];
          blockBytes = end - at;
          blockStream = stream;
          blockEnds = (flags & END_STREAM) !== 0;
          break;
        }
        case CONTINUATION:
          if (!block || stream !== blockStream) throw new Error('INTERNAL: a CONTINUATION frame without its HEADERS');
          blockBytes += end - at;
          if (blockBytes > MAX_HEADER_BLOCK) throw new Error(`INTERNAL: Relay sent a header block over ${MAX_HEADER_BLOCK} bytes`);
          block.push(Buffer.from(buf.subarray(at, end)));
          break;
        case RST_STREAM:
          sized(end - at === 4, 'RST_STREAM');
          if (stream === STREAM) finish(new Error(`UNAVAILABLE: Relay reset the stream (HTTP/2 ${h2Error(buf.readUInt32BE(at))})`));
          return;
        case SETTINGS:
          sized((end - at) % 6 === 0 && !(flags & ACK && end > at), 'SETTINGS');
          if (!(flags & ACK)) socket.write(frameHeader(0, SETTINGS, ACK, 0));
          return;
        case PING:
          sized(end - at === 8, 'PING');
          if (!(flags & ACK)) socket.write(frame(PING, ACK, 0, buf.subarray(at, end)));
          else if (buf.subarray(at, end).equals(PING_PAYLOAD)) {
            clearTimeout(pingAck);
            pingAck = undefined;
          }
          return;
        case GOAWAY: {
          sized(end - at >= 8, 'GOAWAY');
          // A graceful GOAWAY that lets this stream finish is waited out; any other ends the call.
          const last = buf.readUInt32BE(at) & 0x7fffffff;
          const code = buf.readUInt32BE(at + 4);
          // Its debug data says why (grpc-go: "too_many_pings", "max_age").
          const why = end > at + 8 ? `: ${JSON.stringify(buf.toString('utf8', at + 8, end))}` : '';
          const goaway = `HTTP/2 GOAWAY ${h2Error(code)}${why}`;
          if (last < STREAM || code !== 0) finish(new Error(`UNAVAILABLE: Relay is closing the connection (${goaway})`));
          else goingAway = ` (after ${goaway})`;
          return;
        }
        case WINDOW_UPDATE:
          // This side sends one small message: the windows Relay gives are not needed.
          sized(end - at === 4, 'WINDOW_UPDATE');
          return;
        case PUSH_PROMISE:
          throw new Error('INTERNAL: Relay pushed a stream, which was turned off');
        default:
          // PRIORITY and unknown types.
          return;
      }
      if (flags & END_HEADERS) {
        const whole = Buffer.concat(block);
        block = undefined;
        onHeaders(hpack.decode(whole), blockStream, blockEnds);
      }
    };

    /** The frames of buf[0, end): whole ones handled, a part left at the front. */
    const onRead = (n: number): boolean => {
      const end = held + n;
      let at = 0;
      heard = true;
      try {
        if (!greeted && end >= 9) {
          if (buf[3] !== SETTINGS || buf[4]! & ACK) throw notH2c(buf.subarray(0, end), c.address);
          greeted = true;
          clearTimeout(answer);
        }
        while (!settled && end - at >= 9) {
          const len = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
          if (len > MAX_FRAME) throw new Error(`INTERNAL: a frame of ${len} bytes is over the ${MAX_FRAME} allowed`);
          if (end - at - 9 < len) break;
          onFrame(buf[at + 3]!, buf[at + 4]!, buf.readUInt32BE(at + 5) & 0x7fffffff, at + 9, at + 9 + len);
          at += 9 + len;
        }
      } catch (e) {
        finish(e instanceof Error ? e : new Error(String(e)));
      }
      if (settled) return false;
      held = end - at;
      if (held > 0 && at > 0) buf.copyWithin(0, at, end);
      if (unacked >= WINDOW / 2) {
        socket.write(Buffer.concat([frame(WINDOW_UPDATE, 0, 0, u32(unacked)), frame(WINDOW_UPDATE, 0, STREAM, u32(unacked))]));
        unacked = 0;
      }
      if (n >= (BUFFER - (end - n)) / 2) return true;
      resting = setTimeout(() => {
        resting = undefined;
        if (!settled) socket.resume();
      }, REST_MS);
      return false;
    };

    const { host, port } = splitHostPort(c.address);
    // Keepalive probes find a peer that went away without a FIN where the PINGs' five minutes are too slow to wait for.
    const socket: Socket = connect({
      host,
      port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
      onread: { buffer: () => buf.subarray(held), callback: onRead },
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish(socketError(e, c.address)));
    socket.on('close', () => finish(greeted ? new Error(`UNAVAILABLE: Relay closed the connection${goingAway}`) : notH2c(buf.subarray(0, held), c.address)));
    c.signal.addEventListener('abort', onAbort, { once: true });
    if (c.signal.aborted) return onAbort();
    try {
      socket.write(opening(c));
    } catch (e) {
      finish(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
