import type { WebSocket } from 'ws';

// Pre-built WebSocket frames for the live stream: a message that goes to many
// clients is encoded once and framed once (RFC 6455 header + UTF-8 payload in
// one Buffer), then written as-is to each client's socket: one write per
// client, no per-client encoding, header allocation or writev.
//
// Writing to the socket directly is only correct while `ws` itself has nothing
// queued for that socket (its Sender queues while compressing or reading a
// Blob) and the connection is uncompressed; otherwise, and whenever ws's
// internals are not what this expects, the frame goes through `ws.send` with
// the same payload, which is always correct, only slower.

export interface Frame {
  /** The whole frame: header and payload. */
  readonly frame: Buffer;
  /** The payload alone (a view into `frame`), for `ws.send`. */
  readonly payload: Buffer;
}

/** An unmasked, final text frame (server to client) carrying `text`. */
export function textFrame(text: string): Frame {
  const len = Buffer.byteLength(text);
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x81; // FIN + opcode 1 (text)
  if (len < 126) {
    frame[1] = len;
  } else if (len < 65536) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(len, 6);
  }
  frame.write(text, head, 'utf8');
  return { frame, payload: frame.subarray(head) };
}

interface WsInternals {
  _socket?: { write?: (b: Buffer) => boolean; writable?: boolean } | null;
  _sender?: { _state?: number; _queue?: unknown[] } | null;
  _extensions?: Record<string, unknown>;
  _isServer?: boolean;
}

/** Whether a frame can be written straight to this socket without overtaking anything ws has queued. */
export function canWriteRaw(ws: WebSocket): boolean {
  const w = ws as unknown as WsInternals;
  const s = w._sender;
  return (
    w._isServer === true &&
    typeof w._socket?.write === 'function' &&
    w._socket.writable === true &&
    s != null &&
    s._state === 0 &&
    Array.isArray(s._queue) &&
    s._queue.length === 0 &&
    w._extensions != null &&
    Object.keys(w._extensions).length === 0
  );
}

/** Sends a pre-built text frame to an open socket. */
export function writeFrame(ws: WebSocket, f: Frame): void {
  if (canWriteRaw(ws)) (ws as unknown as { _socket: { write: (b: Buffer) => boolean } })._socket.write(f.frame);
  else ws.send(f.payload, { binary: false });
}
