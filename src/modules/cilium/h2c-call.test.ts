import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../../test/helpers/processes.js';
import { type H2cTiming, h2cCall } from './h2c-call.js';
import {
  CONTINUATION,
  DATA,
  frame,
  GOAWAY,
  GRPC_RESPONSE,
  grpcMessage,
  HEADERS,
  literal,
  PING,
  RawH2Peer,
  RST_STREAM,
  SETTINGS,
  WINDOW_UPDATE,
} from '../../../test/helpers/raw-h2-peer.js';

// The call against node:http2's server (nghttp2: Huffman-coded headers, its
// own table entries, its own frame sizes), as a gRPC server answers.

let server: http2.Http2Server | undefined;
let peer: RawH2Peer | undefined;
afterEach(async () => {
  await new Promise((r) => (server ? server.close(r) : r(null)));
  server = undefined;
  await peer?.close();
  peer = undefined;
});

/** A raw-frame peer that answers with `onOpen`'s frames. */
function rawPeer(onOpen: (p: RawH2Peer) => Buffer[], o?: { bytewise?: boolean; preface?: boolean }): Promise<string> {
  peer = new RawH2Peer();
  return peer.listen(onOpen, o);
}

async function serve(onStream: (s: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders, body: Promise<Buffer>) => void): Promise<string> {
  server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  const close = server.close.bind(server);
  // close() waits for open sessions: end them so each test's server goes.
  server.close = ((cb?: (err?: Error) => void) => {
    for (const s of sessions) s.destroy();
    return close(cb);
  }) as typeof server.close;
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    const body = new Promise<Buffer>((resolve) => {
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => resolve(Buffer.concat(chunks)));
    });
    onStream(stream, headers, body);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const grpcHeaders = { ':status': 200, 'content-type': 'application/grpc' };

/** Calls `address` and collects what it answers. */
async function call(address: string, signal = new AbortController().signal, onData?: (b: Buffer) => void, timing?: Partial<H2cTiming>) {
  const got: Buffer[] = [];
  const result = await h2cCall({
    address,
    path: '/observer.Observer/GetFlows',
    request: Buffer.from('request'),
    signal,
    timing,
    onData: (buf, start, end) => {
      const piece = Buffer.from(buf.subarray(start, end));
      got.push(piece);
      onData?.(piece);
    },
  });
  return { result, data: Buffer.concat(got) };
}

describe('h2cCall', () => {
  it('sends the request as a gRPC call and gets a response larger than its window, in order, ending with OK', async () => {
    // 6 MiB: past the 4 MiB windows of the stream and the connection, so the server stalls unless the call gives them back.
    const payload = Buffer.alloc(6 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) >> 8;
    let seen: { headers: http2.IncomingHttpHeaders; body: Buffer } | undefined;
    const address = await serve((stream, headers, body) => {
      void body.then((b) => (seen = { headers, body: b }));
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      for (let at = 0; at < payload.length; at += 100_000) stream.write(payload.subarray(at, at + 100_000));
      stream.end();
    });
    const { result, data } = await call(address);
    expect(result).toBeUndefined();
    expect(data.equals(payload)).toBe(true);
    expect(seen!.headers[':method']).toBe('POST');
    expect(seen!.headers[':path']).toBe('/observer.Observer/GetFlows');
    expect(seen!.headers['content-type']).toBe('application/grpc');
    expect(seen!.headers.te).toBe('trailers');
    expect(seen!.body).toEqual(Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from('request')]));
  });

  it("ends with the call's status from the trailers, its message percent-decoded", async () => {
    const address = await serve((stream) => {
      stream.respond(grpcHeaders, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '14', 'grpc-message': 'no nodes%2C try later' }));
      stream.end(Buffer.from([0, 0, 0, 0, 1, 42]));
    });
    const { result, data } = await call(address);
    expect(result?.message).toBe('UNAVAILABLE: no nodes, try later');
    expect([...data]).toEqual([0, 0, 0, 0, 1, 42]);
  });

  it('ends with the status of a call refused at once (trailers only), and names a port that is not gRPC', async () => {
    let address = await serve((stream) => {
      stream.respond({ ...grpcHeaders, 'grpc-status': '12', 'grpc-message': 'unknown method' }, { endStream: true });
    });
    expect((await call(address)).result?.message).toBe('UNIMPLEMENTED: unknown method');
    await new Promise((r) => server!.close(r));
    address = await serve((stream) => stream.respond({ ':status': 404 }, { endStream: true }));
    expect((await call(address)).result?.message).toBe(
      `UNAVAILABLE: Relay answered HTTP 404; check that cilium.hubble_relay_address (${address}) is Relay's gRPC port`,
    );
  });

  it('ends with an error when the connection closes or cannot be made', async () => {
    const address = await serve((stream) => {
      stream.respond(grpcHeaders);
      stream.write(Buffer.from([0, 0, 0, 0, 1, 42]), () => stream.session?.destroy());
    });
    expect((await call(address)).result?.message).toMatch(/^UNAVAILABLE/);
    const refused = `127.0.0.1:${await freePort()}`;
    expect((await call(refused)).result?.message).toBe(
      `UNAVAILABLE: connect ECONNREFUSED ${refused}: nothing listens there; is Hubble Relay running, and is cilium.hubble_relay_address (${refused}) right?`,
    );
  });

  it('names cilium.hubble_relay_address and its value when the host name does not resolve', async () => {
    // .invalid never resolves (RFC 2606); without a resolver the lookup fails with EAI_AGAIN, which gets the same hint.
    expect((await call('relay.invalid:80')).result?.message).toMatch(
      /^UNAVAILABLE: getaddrinfo (ENOTFOUND|EAI_AGAIN) relay\.invalid: no such host; is cilium\.hubble_relay_address \(relay\.invalid:80\) right\? In the cluster it is usually hubble-relay\.kube-system\.svc\.cluster\.local:80$/,
    );
  });

  it('ends with the error its data handler throws', async () => {
    const address = await serve((stream) => {
      stream.respond(grpcHeaders);
      stream.write(Buffer.from([0, 0, 0, 0, 1, 42]));
    });
    const result = await h2cCall({
      address,
      path: '/observer.Observer/GetFlows',
      request: Buffer.alloc(0),
      signal: new AbortController().signal,
      onData: () => {
        throw new Error('disk full');
      },
    });
    expect(result?.message).toBe('disk full');
  });

  it('cancels the stream when the signal aborts, and resolves without an error', async () => {
    let closed: Promise<number> | undefined;
    const address = await serve((stream) => {
      closed = new Promise((r) => stream.on('close', () => r(stream.rstCode)));
      stream.respond(grpcHeaders);
      stream.write(Buffer.from([0, 0, 0, 0, 1, 42]));
    });
    const abort = new AbortController();
    const { result, data } = await call(address, abort.signal, () => abort.abort());
    expect(result).toBeUndefined();
    expect([...data]).toEqual([0, 0, 0, 0, 1, 42]);
    expect(await closed).toBe(http2.constants.NGHTTP2_CANCEL);
  });
});

describe('h2cCall against a raw-frame peer', () => {
  const settings = frame(SETTINGS, 0, 0);
  const opened = () => [settings, frame(HEADERS, 0x4, 1, GRPC_RESPONSE), frame(DATA, 0, 1, grpcMessage(Buffer.from([42])))];
  const trailersOk = frame(HEADERS, 0x4 | 0x1, 1, literal('grpc-status', '0'));

  it('pings after a silence and ends the call when no ACK comes (a Relay gone without FIN or RST)', async () => {
    const address = await rawPeer(opened);
    const { result, data } = await call(address, undefined, undefined, { pingAfterMs: 30, pingAckMs: 100 });
    expect(result?.message).toBe('UNAVAILABLE: Relay did not answer a ping within 0.1 s; reconnecting');
    expect([...data]).toEqual([0, 0, 0, 0, 1, 42]);
    const pings = peer!.frames.filter((f) => f.type === PING);
    expect(pings).toHaveLength(1);
    expect(pings[0]!.flags).toBe(0);
  });

  it('keeps a silent call whose pings are answered, one ping per interval at most', async () => {
    const address = await rawPeer(opened);
    let answered = 0;
    const timing = { pingAfterMs: 20, pingAckMs: 5_000 };
    const done = call(address, undefined, undefined, timing);
    for (;;) {
      const ping = await peer!.frame((f) => f.type === PING && f.flags === 0 && peer!.frames.filter((g) => g.type === PING).indexOf(f) === answered);
      answered++;
      if (answered === 3) break;
      await peer!.send([frame(PING, 0x1, 0, ping.payload)]);
    }
    await peer!.send([trailersOk]);
    expect((await done).result).toBeUndefined();
  });

  it('takes padded, prioritised, continued and interleaved frames, whole or one byte at a time, and answers PINGs but not PING ACKs', async () => {
    const extra = literal('x-extra', 'e'.repeat(50), 0x40);
    const head = Buffer.concat([GRPC_RESPONSE, extra]);
    const msg = grpcMessage(Buffer.from('hello world'));
    const padded = (b: Buffer, pad: number) => Buffer.concat([Buffer.from([pad]), b, Buffer.alloc(pad)]);
    // Index 62 is x-extra, added to the table by the headers: the trailers' decoder is the same.
    const trailers = Buffer.concat([literal('grpc-status', '0'), Buffer.from([0xbe]), literal('grpc-message', '')]);
    const script = () => [
      frame(SETTINGS, 0, 0, Buffer.from([0, 5, 0, 0, 0x40, 0, 0, 1, 0, 0, 0x10, 0])),
      frame(PING, 0, 0, Buffer.from('abcdefgh')),
      frame(PING, 0x1, 0, Buffer.from('ACKACKAC')),
      frame(0xfa, 0xff, 0, Buffer.from('unknown type')),
      frame(WINDOW_UPDATE, 0, 0, Buffer.from([0, 0, 1, 0])),
      // PADDED (3 bytes) and PRIORITY (5 bytes), then two CONTINUATION frames.
      frame(HEADERS, 0x8 | 0x20, 1, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 16]), head.subarray(0, 5), Buffer.alloc(3)])),
      frame(CONTINUATION, 0, 1, head.subarray(5, 20)),
      frame(CONTINUATION, 0x4, 1, head.subarray(20)),
      frame(DATA, 0x8, 1, padded(msg.subarray(0, 7), 10)),
      frame(DATA, 0, 1, Buffer.alloc(0)),
      frame(DATA, 0x8, 1, padded(msg.subarray(7), 0)),
      frame(HEADERS, 0x1, 1, trailers.subarray(0, 4)),
      frame(CONTINUATION, 0, 1, trailers.subarray(4, 10)),
      frame(CONTINUATION, 0x4, 1, trailers.subarray(10)),
    ];
    for (const bytewise of [false, true]) {
      const address = await rawPeer(script, { bytewise });
      const { result, data } = await call(address);
      expect(result).toBeUndefined();
      expect(data.equals(msg)).toBe(true);
      // Written before the trailers were read; the ACK of a PING ACK would have been written with it.
      await peer!.frame((f) => f.type === PING);
      const pings = peer!.frames.filter((f) => f.type === PING);
      expect(pings.map((f) => [f.flags, f.payload.toString()])).toEqual([[0x1, 'abcdefgh']]);
      await peer!.frame((f) => f.type === SETTINGS && f.flags === 0x1);
      await peer!.close();
    }
  });

  it('ends a call whose trailers carry no grpc-status (or not a number) as UNKNOWN, and takes a trailers-only grpc-status 0 as OK', async () => {
    const opening = [settings, frame(HEADERS, 0x4, 1, GRPC_RESPONSE)];
    for (const trailers of [literal('x-foo', 'bar'), literal('grpc-status', 'abc')]) {
      const address = await rawPeer(() => [...opening, frame(HEADERS, 0x5, 1, trailers)]);
      expect((await call(address)).result?.message).toBe('UNKNOWN: Relay ended the call without a grpc-status');
      await peer!.close();
    }
    let address = await rawPeer(() => [...opening, frame(DATA, 0x1, 1, grpcMessage(Buffer.from([1])))]);
    expect((await call(address)).result?.message).toBe('UNKNOWN: Relay ended the call without a grpc-status');
    await peer!.close();
    address = await rawPeer(() => [settings, frame(HEADERS, 0x5, 1, Buffer.concat([GRPC_RESPONSE, literal('grpc-status', '0')]))]);
    expect((await call(address)).result).toBeUndefined();
  });

  it('says what to check when the port does not speak plain-text HTTP/2: HTTP/1, TLS, a close, no answer', async () => {
    const check = (a: string) => `check that cilium.hubble_relay_address (${a}) is Relay's gRPC port and that Relay serves without TLS`;
    let address = await rawPeer(() => [Buffer.from('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')], { preface: false });
    expect((await call(address)).result?.message).toBe(
      `UNAVAILABLE: Relay did not answer in plain-text HTTP/2 (gRPC without TLS) (it answered in HTTP/1): ${check(address)}`,
    );
    await peer!.close();
    // A TLS server's alert record.
    address = await rawPeer(
      (p) => {
        void p.send([Buffer.from([0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46])]).then(() => p.end());
        return [];
      },
      { preface: false },
    );
    expect((await call(address)).result?.message).toBe(
      `UNAVAILABLE: Relay did not answer in plain-text HTTP/2 (gRPC without TLS) (it answered in TLS): ${check(address)}`,
    );
    await peer!.close();
    address = await rawPeer((p) => {
      p.end();
      return [];
    });
    expect((await call(address)).result?.message).toBe(`UNAVAILABLE: Relay did not answer in plain-text HTTP/2 (gRPC without TLS): ${check(address)}`);
    await peer!.close();
    address = await rawPeer(() => []);
    expect((await call(address, undefined, undefined, { answerMs: 50 })).result?.message).toBe(
      `UNAVAILABLE: Relay did not answer within 0.05 s; check that cilium.hubble_relay_address (${address}) is Relay's gRPC port and that Relay is reachable from the agent`,
    );
  });

  it("names GOAWAY's and RST_STREAM's error codes and GOAWAY's debug data, an answer without :status or not gRPC, and a reset connection", async () => {
    const cases: [Buffer[], string | ((address: string) => string)][] = [
      [
        [frame(GOAWAY, 0, 0, Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 11]), Buffer.from('too_many_pings')]))],
        'UNAVAILABLE: Relay is closing the connection (HTTP/2 GOAWAY ENHANCE_YOUR_CALM: "too_many_pings")',
      ],
      [[frame(RST_STREAM, 0, 1, Buffer.from([0, 0, 0, 2]))], 'UNAVAILABLE: Relay reset the stream (HTTP/2 INTERNAL_ERROR)'],
      [
        [frame(HEADERS, 0x4, 1, literal('content-type', 'application/grpc'))],
        (a) => `UNAVAILABLE: Relay answered without an HTTP status; check that cilium.hubble_relay_address (${a}) is Relay's gRPC port`,
      ],
      [
        [frame(HEADERS, 0x4, 1, Buffer.concat([Buffer.from([0x88]), literal('content-type', 'text/html')]))],
        (a) => `UNAVAILABLE: Relay answered with content-type text/html, not gRPC; check that cilium.hubble_relay_address (${a}) is Relay's gRPC port`,
      ],
    ];
    for (const [frames, message] of cases) {
      const address = await rawPeer(() => [settings, ...frames]);
      expect((await call(address)).result?.message).toBe(typeof message === 'string' ? message : message(address));
      await peer!.close();
    }
    // A graceful GOAWAY (this stream may finish) is waited out; the close after it names it.
    const graceful = frame(GOAWAY, 0, 0, Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0]), Buffer.from('max_age')]));
    let address = await rawPeer((p) => {
      void p.send([settings, frame(HEADERS, 0x4, 1, GRPC_RESPONSE), graceful, frame(DATA, 0, 1, grpcMessage(Buffer.from([7])))]).then(() => p.end());
      return [];
    });
    const afterGoaway = await call(address);
    expect(afterGoaway.result?.message).toBe('UNAVAILABLE: Relay closed the connection (after HTTP/2 GOAWAY NO_ERROR: "max_age")');
    expect([...afterGoaway.data]).toEqual([0, 0, 0, 0, 1, 7]);
    await peer!.close();
    address = await rawPeer((p) => {
      void p
        .send([settings])
        .then(() => p.frame((f) => f.type === SETTINGS && f.flags === 0x1))
        .then(() => p.reset());
      return [];
    });
    expect((await call(address)).result?.message).toMatch(/^UNAVAILABLE: .*ECONNRESET/);
  });

  it('refuses control frames of a size HTTP/2 does not allow, and a header block over 1 MiB', async () => {
    const cases: [Buffer, string][] = [
      [frame(PING, 0, 0, Buffer.alloc(7)), 'PING frame of 7 bytes'],
      [frame(RST_STREAM, 0, 1, Buffer.alloc(0)), 'RST_STREAM frame of 0 bytes'],
      [frame(GOAWAY, 0, 0, Buffer.alloc(2)), 'GOAWAY frame of 2 bytes'],
      [frame(SETTINGS, 0, 0, Buffer.alloc(5)), 'SETTINGS frame of 5 bytes'],
      [frame(SETTINGS, 0x1, 0, Buffer.alloc(6)), 'SETTINGS frame of 6 bytes'],
      [frame(WINDOW_UPDATE, 0, 0, Buffer.alloc(3)), 'WINDOW_UPDATE frame of 3 bytes'],
    ];
    for (const [bad, what] of cases) {
      const address = await rawPeer(() => [settings, bad]);
      expect((await call(address)).result?.message).toBe(`INTERNAL: Relay sent a ${what} (HTTP/2 FRAME_SIZE_ERROR)`);
      await peer!.close();
    }
    const address = await rawPeer(() => [
      settings,
      frame(HEADERS, 0, 1, GRPC_RESPONSE),
      ...Array.from({ length: 70 }, () => frame(CONTINUATION, 0, 1, Buffer.alloc(16_384))),
    ]);
    expect((await call(address)).result?.message).toBe('INTERNAL: Relay sent a header block over 1048576 bytes');
  });
});
