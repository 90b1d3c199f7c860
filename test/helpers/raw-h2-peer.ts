import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

// An HTTP/2 server written frame by frame, for the Relay client's tests
// (src/modules/cilium/h2c-call.test.ts, relay-client.test.ts): it sends
// exactly the bytes a test gives it, cut where the test says, which a real
// server (node:http2, grpc-go) never lets a test choose, and it can stop
// answering without closing.

export const DATA = 0;
export const HEADERS = 1;
export const RST_STREAM = 3;
export const SETTINGS = 4;
export const PING = 6;
export const GOAWAY = 7;
export const WINDOW_UPDATE = 8;
export const CONTINUATION = 9;

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

export function frame(type: number, flags: number, stream: number, payload: Uint8Array = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** A literal header field with a new name (not Huffman-coded): `first` 0x40 adds it to the table, 0x00 does not, 0x10 never indexed. */
export function literal(name: string | Uint8Array, value: string | Uint8Array, first = 0x00): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  if (n.length > 126 || v.length > 126) throw new Error('literal(): up to 126 bytes');
  return Buffer.concat([Buffer.from([first, n.length]), n, Buffer.from([v.length]), v]);
}

/** `:status: 200` (static index 8) and gRPC's content type. */
export const GRPC_RESPONSE = Buffer.concat([Buffer.from([0x88]), literal('content-type', 'application/grpc')]);

/** A gRPC length-prefixed message. */
export function grpcMessage(body: Uint8Array): Buffer {
  const m = Buffer.alloc(5 + body.length);
  m.writeUInt32BE(body.length, 1);
  m.set(body, 5);
  return m;
}

const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

export class RawH2Peer {
  /** The client's frames, in order, on the last connection. */
  readonly frames: RawFrame[] = [];
  private server: Server | undefined;
  private socket: Socket | undefined;
  private waiters: { match: (f: RawFrame) => boolean; resolve: (f: RawFrame) => void }[] = [];

  /**
   * Listens; when a client has sent the preface, `onOpen` gives what to send
   * (sent as one write, or one byte per write with `bytewise`). `preface`
   * false: answer whatever arrives first (a server that does not speak HTTP/2).
   */
  async listen(onOpen: (peer: RawH2Peer) => Buffer[], o: { bytewise?: boolean; preface?: boolean } = {}): Promise<string> {
    this.server = createServer((socket) => {
      this.socket = socket;
      socket.on('error', () => {});
      let acc = Buffer.alloc(0);
      let at = -1;
      socket.on('data', (d) => {
        acc = Buffer.concat([acc, d]);
        if (at < 0) {
          if (o.preface === false || acc.length >= PREFACE.length) {
            at = o.preface === false ? acc.length : PREFACE.length;
            if (o.preface !== false && acc.subarray(0, PREFACE.length).toString('latin1') !== PREFACE) socket.destroy();
            else void this.send(onOpen(this), o.bytewise);
          }
          if (o.preface === false) return;
        }
        while (acc.length - at >= 9) {
          const len = acc.readUIntBE(at, 3);
          if (acc.length - at - 9 < len) break;
          const f = {
            type: acc[at + 3]!,
            flags: acc[at + 4]!,
            stream: acc.readUInt32BE(at + 5) & 0x7fffffff,
            payload: Buffer.from(acc.subarray(at + 9, at + 9 + len)),
          };
          at += 9 + len;
          this.frames.push(f);
          for (const w of this.waiters.filter((w) => w.match(f))) {
            w.resolve(f);
            this.waiters.splice(this.waiters.indexOf(w), 1);
          }
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Sends bytes to the client, in one write or one byte a write (each after the last was taken). */
  async send(parts: Buffer[], bytewise = false): Promise<void> {
    const out = Buffer.concat(parts);
    if (!bytewise) return void this.socket?.write(out);
    for (const b of out) await new Promise((r) => this.socket?.write(Buffer.from([b]), r));
  }

  /** The first frame from the client (already received or still to come) that `match` accepts. */
  frame(match: (f: RawFrame) => boolean): Promise<RawFrame> {
    const seen = this.frames.find(match);
    return seen ? Promise.resolve(seen) : new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** Ends the connection with a FIN, after what was sent. */
  end(): void {
    this.socket?.end();
  }

  /** Ends the connection with a TCP RST. */
  reset(): void {
    this.socket?.resetAndDestroy();
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise((r) => (this.server ? this.server.close(r) : r(null)));
  }
}
