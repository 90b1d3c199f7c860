import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { ServerCredentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { falcoConfig, runGrpcInput, silent, store, tmp, type Store } from '../../../test/falco/helpers.js';
import { makeCerts } from '../../../test/helpers/certs.js';
import { startFalcoGrpcPeer, toGrpcResponse } from '../../peers/falco/falco-grpc-peer.js';
import { scenarioEvent } from '../../peers/falco/scenario.js';
import { serviceService } from '../../gen/falco/outputs.js';
import { loadFalcoDefaults } from './defaults.js';
import { eventFromResponse } from './grpc.js';
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
  return runGrpcInput({ ...tls, address, sink, builder, log: silent, signal });
}

describe('legacy gRPC input', () => {
  it('converts a gRPC output message into an event', () => {
    const ev = eventFromResponse(toGrpcResponse(scenarioEvent(4)))!;
    expect(ev).toMatchObject({ rule: 'Attach/Exec Pod', priority: 'Notice', source: 'k8s_audit' });
    expect(ev.time).toMatch(/\.\d{9}Z$/);
    expect(ev.output_fields['ka.user.groups']).toBe('system:authenticated,developers');
    expect(eventFromResponse({ ...toGrpcResponse(scenarioEvent(0)), priority: -1 })).toBeUndefined();
  });

  it('decodes bytes laid out as upstream falco/outputs.proto, independently of the generated code', () => {
    // response: time=1 Timestamp{seconds=1, nanos=2}, priority=2 enum, source_deprecated=3, rule=4,
    // output=5, output_fields=6 map<string,string>, hostname=7, tags=8 repeated, source=9.
    const w = new BinaryWriter();
    w.uint32((1 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 0)
      .int64(1_700_000_000)
      .uint32((2 << 3) | 0)
      .int32(123_456_789)
      .join();
    w.uint32((2 << 3) | 0).int32(3);
    w.uint32((3 << 3) | 0).uint32(1);
    w.uint32((4 << 3) | 2).string('Write below etc');
    w.uint32((5 << 3) | 2).string('File below /etc opened for writing');
    w.uint32((6 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 2)
      .string('evt.time')
      .uint32((2 << 3) | 2)
      .string('1700000000123456789')
      .join();
    w.uint32((6 << 3) | 2)
      .fork()
      .uint32((1 << 3) | 2)
      .string('proc.aname[2]')
      .uint32((2 << 3) | 2)
      .string('<NA>')
      .join();
    w.uint32((7 << 3) | 2).string('node-a');
    w.uint32((8 << 3) | 2).string('filesystem');
    w.uint32((8 << 3) | 2).string('T1565');
    w.uint32((9 << 3) | 2).string('syscall');
    const ev = eventFromResponse(serviceService.sub.responseDeserialize(Buffer.from(w.finish())))!;
    expect(ev).toMatchObject({
      time: '2023-11-14T22:13:20.123456789Z',
      rule: 'Write below etc',
      priority: 'Error',
      source: 'syscall',
      hostname: 'node-a',
      output: 'File below /etc opened for writing',
      tags: ['T1565', 'filesystem'],
      output_fields: { 'evt.time': '1700000000123456789', 'proc.aname[2]': '<NA>' },
    });
    expect([serviceService.sub.path, serviceService.sub.requestStream, serviceService.sub.responseStream]).toEqual(['/falco.outputs.service/sub', true, true]);
    expect(serviceService.sub.requestSerialize({}).length).toBe(0);
  });

  it('reads the source of Falco before 0.31 from source_deprecated (falco.schema.source)', () => {
    // An audit event whose output has no ka.* field, and an internal one, from a Falco without field 9.
    const audit = { ...toGrpcResponse(scenarioEvent(4)), source: '', source_deprecated: 1, output_fields: { 'user.name': 'dev' } };
    expect(eventFromResponse(audit)!.source).toBe('k8s_audit');
    expect(eventFromResponse({ ...audit, rule: 'Drop', source_deprecated: 2 })!.source).toBe('internal');
    // 0 is SYSCALL and also "not set": the event's own fields decide.
    expect(eventFromResponse({ ...audit, source_deprecated: 0 })!.source).toBe('syscall');
    expect(eventFromResponse({ ...audit, source_deprecated: 0, output_fields: { 'ka.verb': 'create' } })!.source).toBe('k8s_audit');
    // Field 9 wins when set.
    expect(eventFromResponse({ ...audit, source: 'okta' })!.source).toBe('okta');
  });

  it('keeps events it could not store and stores them once storage works again', async () => {
    const peer = await startFalcoGrpcPeer();
    const s = store();
    let fail = true;
    let attempts = 0;
    const adder = {
      add: (a: Parameters<typeof s.alerts.add>[0], w: number, t?: () => void) => {
        attempts++;
        if (fail) throw new Error('disk full');
        s.alerts.add(a, w, t);
      },
    };
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const abort = new AbortController();
    const done = runGrpcInput({ address: peer.address, sink, builder, log: silent, signal: abort.signal });
    try {
      peer.push(scenarioEvent(0), scenarioEvent(1));
      await until(() => attempts >= 2, 'failed attempts');
      expect(s.outbox.size).toBe(0);
      fail = false;
      await until(() => s.outbox.size === 2, 'both alerts after storage recovered');
    } finally {
      abort.abort();
      await done;
      await peer.close();
    }
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
    expect(rules).toEqual([
      'Terminal shell in container',
      'Write below etc',
      'Detect outbound connections to common miner pool ports',
      'Read sensitive file untrusted',
    ]);
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

  it("uses mutual TLS as Falco's gRPC server requires over TCP", async () => {
    const c = makeCerts(tmp('verdict-certs-'));
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
