import { dataFrameBody, dataFrameBytes } from './wire.js';

// Body bytes onto a Connect call as data frames, both ways (the agent's
// response bodies, the server's request bodies and upgraded streams).
//
// What a source hands over within one turn of the event loop goes out as one
// frame. The API server writes a large list in pieces of a few KiB, and each
// frame costs a protobuf encode, a gRPC message, HTTP/2 frames and a wake-up
// of the process on the other side, and then a write to kubectl: per piece,
// that was most of the tunnel's CPU on a list. A source that delivers slowly
// (a watch, an exec session) still gets each piece through within the turn.
//
// Large frames are built in buffers used again once grpc-js has copied them
// (the write's callback). A new buffer per frame would be garbage of the
// body's size, and on a list V8 answers that external memory with a full
// mark-compact of the agent's heap every few MiB.

/** A frame's largest body: big enough that per-frame work is small beside the bytes, small enough that a stalled reader holds little (the call buffers 16 frames). */
export const MAX_FRAME_BYTES = 256 << 10;

/** Frames from this size on are built in a pooled buffer; smaller ones come from Node's own pool of small buffers. */
const POOLED_FROM = 16 << 10;
/** A pooled buffer: the largest frame, the last chunk that filled it (a socket read is at most 64 KiB), and the prefix. */
const POOL_BUFFER_BYTES = MAX_FRAME_BYTES + (64 << 10) + 16;
/**
 * Free pooled buffers kept for the next frames: enough for the frames of a few large bodies in flight at once.
 * Only free ones count. A buffer comes back only through its write's callback, which a call torn down in the
 * middle of a write may never run; grpc-js may still hold such a buffer, so it is never used again, and it must
 * not count against the pool either, or a few torn-down calls would turn pooling off for the process's life.
 */
const POOL_KEEP = 8;
const pool: Buffer[] = [];

/** A free pooled buffer, or a new one. */
function poolBuffer(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafeSlow(POOL_BUFFER_BYTES);
}

/** A buffer grpc-js is done with (its write's callback ran): kept for the next frame while the pool has room. */
function giveBack(b: Buffer): void {
  if (pool.length < POOL_KEEP) pool.push(b);
}

/** The side of a Connect call body bytes are written to (the server's ServerFrame or the agent's AgentFrame call). */
export interface DataSink {
  write(frame: { msg: { $case: 'data'; value: Buffer } }, done?: (error?: Error | null) => void): boolean;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

interface PipeOptions {
  /**
   * Writes what precedes the body (a response's header): with the first
   * frame, so both leave in one write and reach the other side in one read,
   * or by the end of this turn when no body comes yet (a watch).
   */
  before?: () => void;
  /**
   * When the source ends before `before` ran (the whole body arrived within
   * the turn) and the body is at most `wholeUpTo` bytes: called with the body
   * instead of `before`, data frames and onEnd, to send it all as one frame.
   */
  whole?: (body: Buffer) => void;
  wholeUpTo?: number;
  /**
   * Gathers a frame for up to this long rather than one turn: for a body read
   * whole by its client (a list, not a watch), whose pieces may come a few KiB
   * a millisecond (the API server sends a gzip list as it compresses it, some
   * fifty pieces). Each frame costs both processes a wake-up, a gRPC message
   * and a TLS record; the client waits for the end either way.
   */
  lingerMs?: number;
}

/**
 * Pipes `from` into `call` as data frames, pausing `from` while the call's
 * buffer is full; onEnd runs after the last frame when `from` ends (it writes
 * the end frame).
 */
export function pipeFrames(from: Source, call: DataSink, onEnd: () => void, o: PipeOptions = {}): void {
  let parts: Buffer[] = [];
  let size = 0;
  // Cancels the flush to come, if one is scheduled.
  let scheduled: (() => void) | undefined;
  const unschedule = () => {
    scheduled?.();
    scheduled = undefined;
  };
  const schedule = (linger = o.lingerMs): (() => void) => {
    if (linger) {
      const t = setTimeout(flush, linger);
      return () => clearTimeout(t);
    }
    const i = setImmediate(flush);
    return () => clearImmediate(i);
  };
  let waiting = false;
  let head = o.before;
  const flush = () => {
    unschedule();
    if (head) {
      const h = head;
      head = undefined;
      if (!call.destroyed && !call.writableEnded) h();
    }
    if (size === 0) return;
    const from0 = parts;
    const n = size;
    parts = [];
    size = 0;
    if (call.destroyed || call.writableEnded) return;
    let ok: boolean;
    const buf = n >= POOLED_FROM && dataFrameBytes(n) <= POOL_BUFFER_BYTES ? poolBuffer() : undefined;
    if (buf) {
      ok = call.write({ msg: { $case: 'data', value: dataFrameBody(from0, n, buf) } }, () => giveBack(buf));
    } else {
      ok = call.write({ msg: { $case: 'data', value: from0.length === 1 ? from0[0]! : Buffer.concat(from0, n) } });
    }
    if (!ok && !waiting) {
      waiting = true;
      from.pause();
      call.once('drain', () => {
        waiting = false;
        from.resume();
      });
    }
  };
  if (head) scheduled = schedule(0);
  from.on('data', (chunk: Buffer) => {
    parts.push(chunk);
    size += chunk.length;
    if (size >= MAX_FRAME_BYTES) flush();
    else scheduled ??= schedule();
  });
  from.on('end', () => {
    if (head && o.whole && size <= (o.wholeUpTo ?? 0)) {
      unschedule();
      head = undefined;
      const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
      parts = [];
      size = 0;
      // Called on a closed call too, as onEnd is: the caller finishes the request either way.
      o.whole(body);
      return;
    }
    flush();
    onEnd();
  });
  // Closed without an end (a reset, an aborted response): the caller cancels the call, so what is left is dropped.
  from.on('close', unschedule);
}

type Source = NodeJS.ReadableStream;
