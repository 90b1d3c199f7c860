import { ServerCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { falcoConfig, makeCerts, silent, store, tmp, type Store } from '../../../../test/falco/helpers.js';
import { startFalcoGrpcPeer, toGrpcResponse } from '../../../peers/falco/falco-grpc-peer.js';
import { scenarioEvent } from '../../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { eventFromResponse, runFalcoGrpcInput } from './grpc.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

async function until(fn: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function run(s: Store, address: string, signal: AbortSignal, tls: { ca_file?: string; cert_file?: string; key_file?: string } = {}) {
  const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
  const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
  return runFalcoGrpcInput({ ...tls, address, pollIntervalMs: 50, reconnect: { initial_backoff: 50, max_backoff: 200 }, sink, builder, log: silent, signal });
}

describe('legacy gRPC input', () => {
  it('converts a gRPC output message into an event', () => {
    const ev = eventFromResponse(toGrpcResponse(scenarioEvent(4)))!;
    expect(ev).toMatchObject({ rule: 'Attach/Exec Pod', priority: 'Notice', source: 'k8s_audit' });
    expect(ev.time).toMatch(/\.\d{9}Z$/);
    expect(ev.output_fields['ka.user.groups']).toBe('system:authenticated,developers');
    expect(eventFromResponse({ ...toGrpcResponse(scenarioEvent(0)), priority: -1 })).toBeUndefined();
  });

  it('subscribes, stores events, and reconnects when Falco drops the stream', async () => {
    const peer = await startFalcoGrpcPeer();
    const s = store();
    const abort = new AbortController();
    const done = run(s, peer.address, abort.signal);
    try {
      peer.push(scenarioEvent(0), scenarioEvent(1), scenarioEvent(2));
      await until(() => s.outbox.size === 3, '3 alerts');
      await until(() => peer.subscribers === 1, 'a subscriber');
      peer.dropSubscribers();
      peer.push(scenarioEvent(3));
      await until(() => s.outbox.size === 4, 'the 4th alert after reconnecting');
    } finally {
      abort.abort();
      await done;
      await peer.close();
    }
    const rules = s.outbox.read(0, 10).map((r) => (JSON.parse(r.payload.toString()) as { rule: string }).rule);
    expect(rules).toEqual(['Terminal shell in container', 'Write below etc', 'Detect outbound connections to common miner pool ports', 'Read sensitive file untrusted']);
  });

  it('dials a unix socket and keeps retrying until Falco is there', async () => {
    const sock = `unix://${join(tmp(), 'falco.sock')}`;
    const s = store();
    const abort = new AbortController();
    const done = run(s, sock, abort.signal);
    await new Promise((r) => setTimeout(r, 300));
    const peer = await startFalcoGrpcPeer({ address: sock });
    try {
      peer.push(scenarioEvent(5));
      await until(() => s.outbox.size === 1, 'an alert over the unix socket');
    } finally {
      abort.abort();
      await done;
      await peer.close();
    }
  });

  const certs = makeCerts();
  it('uses mutual TLS as Falco\'s gRPC server requires over TCP', async () => {
    expect(certs, 'openssl is needed for the TLS tests: apt-get install openssl').toBeDefined();
    const c = certs!;
    const creds = ServerCredentials.createSsl(readFileSync(c.ca), [{ cert_chain: readFileSync(c.serverCert), private_key: readFileSync(c.serverKey) }], true);
    const peer = await startFalcoGrpcPeer({ credentials: creds });
    const s = store();
    const abort = new AbortController();
    const done = run(s, peer.address, abort.signal, { ca_file: c.ca, cert_file: c.clientCert, key_file: c.clientKey });
    try {
      peer.push(scenarioEvent(6));
      await until(() => s.outbox.size === 1, 'an alert over mutual TLS');
    } finally {
      abort.abort();
      await done;
      await peer.close();
    }
  });
});
