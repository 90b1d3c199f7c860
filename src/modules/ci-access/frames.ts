// Body bytes onto a Connect call as data frames, both ways (the agent's
// response bodies, the server's request bodies and upgraded streams).
//
// What a source hands over within one turn of the event loop goes out as one
// frame. The API server writes a large list in pieces of a few KiB, and each
// frame costs a protobuf encode, a gRPC message, HTTP/2 frames and a wake-up
// of the process on the other side, and then a write to kubectl: per piece,
// that was most of the tunnel's CPU on a list. A source that delivers slowly
// (a watch, an exec session) still gets each piece through within the turn.

/** A frame's largest body: big enough that per-frame work is small beside the bytes, small enough that a stalled reader holds little (the call buffers 16 frames). */
export const MAX_FRAME_BYTES = 256 << 10;

/** The side of a Connect call body bytes are written to (the server's ServerFrame or the agent's AgentFrame call). */
export interface DataSink {
  write(frame: { msg: { $case: 'data'; value: Buffer } }): boolean;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
}

type Source = NodeJS.ReadableStream;

/**
 * Pipes `from` into `call` as data frames, pausing `from` while the call's
 * buffer is full; onEnd runs after the last frame when `from` ends (it writes
 * the end frame). `before` writes what precedes the body (a response's
 * header): with the first frame, so both leave in one write and reach the
 * other side in one read, or by the end of this turn when no body comes yet
 * (a watch).
 */
export function pipeFrames(from: Source, call: DataSink, onEnd: () => void, before?: () => void): void {
  let parts: Buffer[] = [];
  let size = 0;
  let scheduled: NodeJS.Immediate | undefined;
  let waiting = false;
  let head = before;
  const flush = () => {
    if (scheduled) clearImmediate(scheduled);
    scheduled = undefined;
    if (head) {
      const h = head;
      head = undefined;
      if (!call.destroyed && !call.writableEnded) h();
    }
    if (size === 0) return;
    const value = parts.length === 1 ? parts[0]! : Buffer.concat(parts, size);
    parts = [];
    size = 0;
    if (call.destroyed || call.writableEnded) return;
    if (!call.write({ msg: { $case: 'data', value } }) && !waiting) {
      waiting = true;
      from.pause();
      call.once('drain', () => {
        waiting = false;
        from.resume();
      });
    }
  };
  if (head) scheduled = setImmediate(flush);
  from.on('data', (chunk: Buffer) => {
    parts.push(chunk);
    size += chunk.length;
    if (size >= MAX_FRAME_BYTES) flush();
    else scheduled ??= setImmediate(flush);
  });
  from.on('end', () => {
    flush();
    onEnd();
  });
  // Closed without an end (a reset, an aborted response): the caller cancels the call, so what is left is dropped.
  from.on('close', () => {
    if (scheduled) clearImmediate(scheduled);
    scheduled = undefined;
  });
}
