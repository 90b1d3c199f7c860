import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { SERVER_SHUTTING_DOWN } from '../../shared/agent-api.js';
import { describeCallError, explainTransportError, isServerShutdown } from './errors.js';
import { parseKasAddress } from './kas-address.js';

const grpcAddr = parseKasAddress('grpc://verdict:8150');
const grpcsAddr = parseKasAddress('grpcs://verdict:8150');
const wsAddr = parseKasAddress('ws://verdict:8080/-/kubernetes-agent/');
const wssAddr = parseKasAddress('wss://verdict/-/kubernetes-agent/');
const unavailable = (details: string) => ({ code: grpc.status.UNAVAILABLE, details });

describe('describeCallError', () => {
  it('keeps the Unauthenticated wording of the original', () => {
    expect(describeCallError({ code: grpc.status.UNAUTHENTICATED, details: 'unauthenticated: the agent token is unknown or revoked' }, grpcAddr)).toMatch(
      /^Unauthenticated: unauthenticated/,
    );
  });
  it('names the likely fix of a scheme mismatch', () => {
    // grpc:// at the HTTP port: grpc-js sees an HTTP/1.1 answer.
    expect(
      describeCallError(unavailable('No connection established. Last error: Protocol error (2026-01-01T00:00:00.000Z). Resolution note: '), grpcAddr),
    ).toBe(
      "verdict:8150 answered with HTTP/1.1, not gRPC (Protocol error): it is probably the server's HTTP port; use ws://verdict:8150/-/kubernetes-agent/ for that port, or point grpc:// at the server's gRPC address (--grpc-addr)",
    );
    // ws:// at the gRPC port: the HTTP parser meets HTTP/2.
    expect(explainTransportError('Parse Error: Expected HTTP/, RTSP/ or ICE/', wsAddr)).toMatch(/probably the server's gRPC port; use grpc:\/\/verdict:8080/);
    expect(explainTransportError('wrong version number', grpcsAddr)).toMatch(/does not speak TLS .*use grpc:\/\//);
    expect(explainTransportError('socket hang up (ECONNRESET)', wsAddr)).toMatch(/if the server serves TLS there, use wss:\/\//);
  });
  it('points at --ca-cert-file for an unknown CA', () => {
    expect(
      describeCallError(unavailable('No connection established. Last error: Error: unable to verify the first certificate. Resolution note: '), grpcsAddr),
    ).toMatch(/not signed by a CA the agent trusts \(unable to verify the first certificate\); pass the CA certificate that signed it with --ca-cert-file/);
    expect(explainTransportError('self-signed certificate in certificate chain', wssAddr)).toMatch(/--ca-cert-file/);
  });
  it('explains refused connections, unknown hosts and rate limits', () => {
    expect(describeCallError(unavailable('No connection established. Last error: connect ECONNREFUSED 127.0.0.1:8150. Resolution note: '), grpcAddr)).toMatch(
      /^connection refused by grpc:\/\/verdict:8150/,
    );
    expect(describeCallError(unavailable('Name resolution failed for target dns:nope:8150'), grpcAddr)).toMatch(/^no such host for --kas-address/);
    expect(describeCallError({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'too many' }, grpcAddr)).toBe('rate limited by the server: too many');
  });
  it("names grpc-js's message size limits as such, not as the server's rate limits", () => {
    const sent = describeCallError({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'Attempted to send message with a size larger than 10485760' }, grpcAddr);
    expect(sent).toMatch(/^the agent did not send a message larger than its own gRPC send limit \(Attempted to send .*10485760\); this is not a rate limit/);
    const received = describeCallError({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (10485800 vs 10485760)' }, grpcAddr);
    expect(received).toMatch(/^a message between the agent and the server was over the gRPC message size limit .*; this is not a rate limit/);
    expect(`${sent} ${received}`).not.toMatch(/rate limited/);
  });
  it("prefers what the WebSocket dial saw over grpc-js's view of the loopback bridge", () => {
    expect(describeCallError(unavailable('Failed to connect'), wsAddr, 'server answered HTTP 301')).toBe('server answered HTTP 301');
  });
});

describe('a connection that closes', () => {
  it('is the server going away once it had answered, not a TLS mismatch', () => {
    // grpc-js's text for a call on a connection whose server had sent its HTTP/2 settings (a killed replica).
    for (const a of [grpcAddr, grpcsAddr]) {
      const said = describeCallError(unavailable('Connection dropped'), a);
      expect(said).toBe(
        'verdict:8150 closed the connection (Connection dropped): the server restarted or crashed, or a proxy between closed it; the agent reconnects',
      );
    }
  });
  it('keeps the TLS hint for a connection that never got an answer', () => {
    // A plaintext agent at a TLS port: the server closes before sending HTTP/2 settings.
    expect(
      describeCallError(unavailable('No connection established. Last error: Failed to connect (2026-01-01T00:00:00.000Z). Resolution note: '), grpcAddr),
    ).toBe('verdict:8150 closed the connection before gRPC completed (Failed to connect); if the server serves TLS there, use grpcs://');
  });
});

describe('isServerShutdown', () => {
  it('is a server that ended its streams as it stopped or sent GOAWAY, not one that is down, refused, or a reset stream', () => {
    expect(isServerShutdown(unavailable(SERVER_SHUTTING_DOWN))).toBe(true);
    // What a proxy resetting the stream, or the end of a server's grace period, looks like.
    expect(isServerShutdown({ code: grpc.status.CANCELLED, details: 'Call cancelled' })).toBe(false);
    expect(isServerShutdown(unavailable('Received HTTP/2 GOAWAY with code NO_ERROR'))).toBe(true);
    expect(isServerShutdown(unavailable('No connection established. Last error: connect ECONNREFUSED 127.0.0.1:8150.'))).toBe(false);
    expect(isServerShutdown(unavailable('Connection dropped'))).toBe(false);
    expect(isServerShutdown({ code: grpc.status.UNAUTHENTICATED, details: 'revoked' })).toBe(false);
    expect(isServerShutdown(undefined)).toBe(false);
  });
});
