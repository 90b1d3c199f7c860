import type { WebSocket } from 'ws';

// Messages of the live stream that go to many clients are encoded once: the
// JSON text becomes one UTF-8 Buffer, handed to every client's `ws.send`.
// ws frames a Buffer without copying it (an unmasked server frame is a small
// header plus the payload, written together), so a client costs a header and
// one socket write, never an encoding of its own. Going through ws's public
// send keeps its queueing, compression and close handling in charge; writing
// pre-built frames to ws's private socket saved little and broke on ws's
// internals.

export interface Frame {
  /** The message's UTF-8 bytes, sent as a text frame. */
  readonly payload: Buffer;
}

/** A text message encoded once, for any number of clients. */
export function textFrame(text: string): Frame {
  return { payload: Buffer.from(text, 'utf8') };
}

/** Sends an encoded text message to an open socket. */
export function writeFrame(ws: WebSocket, f: Frame): void {
  ws.send(f.payload, { binary: false });
}
