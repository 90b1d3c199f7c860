import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HubbleRelayPeer } from '../../peers/hubble-relay/relay-peer.js';
import { Flow } from '../../gen/flow/flow.js';
import { parseFlowLine } from './flow-json.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';

const openDatabase = () => openAgentDb(':memory:');
import { FlowCursor } from './flow-cursor.js';
import { DATA, frame, GRPC_RESPONSE, grpcMessage, HEADERS, literal, RawH2Peer, SETTINGS } from '../../../test/helpers/raw-h2-peer.js';
import { droppedFlowsRequest, followDroppedFlows, getFlows } from './relay-client.js';

const log = pino({ level: 'silent' });

function drop(at: Date, n: number) {
  return parseFlowLine(
    JSON.stringify({
      flow: {
        time: at.toISOString(),
        uuid: `flow-${n}`,
        verdict: 'DROPPED',
        IP: { source: `10.0.0.${n}`, destination: '10.0.1.13', ipVersion: 'IPv4' },
        l4: { TCP: { source_port: 40000 + n, destination_port: 8443 } },
        Type: 'L3_L4',
        node_name: 'kind-worker',
        traffic_direction: 'INGRESS',
        event_type: { type: 1, sub_type: 133 },
        drop_reason_desc: 'POLICY_DENIED',
      },
    }),
  )!;
}

let relay: HubbleRelayPeer | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

describe('followDroppedFlows', () => {
  it('ends the stream and reconnects when handling a flow throws, instead of an uncaught exception', async () => {
    relay = new HubbleRelayPeer();
    const address = await relay.listen('127.0.0.1:0');
    const abort = new AbortController();
    let calls = 0;
    const seen: string[] = [];
    const follow = followDroppedFlows({
      address,
      backoff: { initialMs: 10, maxMs: 20, jitter: false },
      cursor: new FlowCursor(openAgentDb(':memory:'), address),
      log,
      signal: abort.signal,
      onFlow: (f) => {
        calls++;
        seen.push(f.uuid);
        if (calls === 1) throw new Error('disk full');
      },
    });
    // Without a saved position the stream starts with new flows: push once it is open.
    for (let i = 0; i < 200 && relay.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    relay.push([drop(new Date(), 1)]);
    // Reconnected: a flow pushed after the failure still arrives.
    for (let i = 0; i < 200 && !seen.includes('flow-2'); i++) {
      if (calls >= 1 && relay.requests.length >= 2 && i % 10 === 0) relay.push([drop(new Date(), 2)]);
      await new Promise((r) => setTimeout(r, 20));
    }
    abort.abort();
    await follow;
    expect(seen[0]).toBe('flow-1');
    expect(seen).toContain('flow-2');
  });

  /** A fresh Relay peer and a client following it, once the client's request is in. */
  async function following(onFlow: Parameters<typeof followDroppedFlows>[0]['onFlow']): Promise<{ peer: HubbleRelayPeer; stop: () => Promise<void> }> {
    const peer = new HubbleRelayPeer();
    relay = peer;
    const address = await peer.listen('127.0.0.1:0');
    const abort = new AbortController();
    const follow = followDroppedFlows({
      address,
      backoff: { initialMs: 10, maxMs: 20, jitter: false },
      cursor: new FlowCursor(openDatabase(), address),
      log,
      signal: abort.signal,
      onFlow,
    });
    for (let i = 0; i < 200 && peer.requests.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    return {
      peer,
      stop: async () => {
        abort.abort();
        await follow;
      },
    };
  }

  it('hands each flow over with its bytes as received, so nothing encodes it again', async () => {
    const got: [Flow, Uint8Array][] = [];
    const follower = await following((f, _node, bytes) => got.push([f, bytes.slice()]));
    const sent = drop(new Date(), 3);
    follower.peer.push([sent]);
    for (let i = 0; i < 200 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    await follower.stop();
    const [f, bytes] = got[0]!;
    expect(f.uuid).toBe('flow-3');
    expect(Buffer.from(bytes)).toEqual(Buffer.from(Flow.encode(sent).finish()));
  });

  it("hands over each flow's node name, of any node, repeated or new, in any order and however many flows a chunk holds", async () => {
    const got: [string, string][] = [];
    const follower = await following((f, node) => got.push([f.uuid, node]));
    const names = ['kind-worker', 'kind-worker2', 'nœud-ü', '\uFEFFbom', 'kind-worker3', 'kind-worker', 'a', 'kind-worker2'];
    const t = Date.now();
    const flows = Array.from({ length: 600 }, (_, i) => {
      const f = drop(new Date(t + i), 100 + i);
      f.node_name = names[(i * 5) % names.length]!;
      return f;
    });
    follower.peer.push(flows);
    for (let i = 0; i < 300 && got.length < flows.length; i++) await new Promise((r) => setTimeout(r, 20));
    await follower.stop();
    expect(got).toEqual(flows.map((f) => [f.uuid, f.node_name]));
  });
});

describe('getFlows', () => {
  let peer: RawH2Peer | undefined;
  afterEach(async () => {
    await peer?.close();
    peer = undefined;
  });

  /** A call to a raw-frame peer that answers with `frames` after its SETTINGS and the response's headers; what each message is given. */
  async function getFrom(frames: Buffer[], onMessage: (buf: Uint8Array, start: number, end: number, abort: () => void) => void = () => {}) {
    peer = new RawH2Peer();
    const address = await peer.listen(() => [frame(SETTINGS, 0, 0), frame(HEADERS, 0x4, 1, GRPC_RESPONSE), ...frames]);
    const abort = new AbortController();
    const cursor = new FlowCursor(openDatabase(), address);
    return getFlows(address, droppedFlowsRequest(cursor), abort.signal, (_r, buf, start, end) => onMessage(buf, start, end, () => abort.abort()));
  }
  const ok = frame(HEADERS, 0x5, 1, literal('grpc-status', '0'));

  it('hands over no more messages once a handler aborted the call', async () => {
    const three = Buffer.concat([1, 2, 3].map((n) => grpcMessage(Buffer.from([n]))));
    const got: number[] = [];
    const result = await getFrom([frame(DATA, 0, 1, three)], (buf, start, _end, abort) => {
      got.push(buf[start]!);
      abort();
    });
    expect(result).toBeUndefined();
    expect(got).toEqual([1]);
  });

  it('ends with an error when Relay ends the call cleanly in the middle of a message', async () => {
    const msg = grpcMessage(Buffer.from('whole'));
    const result = await getFrom([frame(DATA, 0, 1, Buffer.concat([msg, msg.subarray(0, 7)])), ok]);
    expect(result?.message).toBe('INTERNAL: Relay ended the stream in the middle of a message');
  });

  it('gives back the room a large message took once it is handled', async () => {
    const big = grpcMessage(Buffer.alloc(300 * 1024, 7));
    const frames: Buffer[] = [];
    for (let at = 0; at < big.length; at += 16_384) frames.push(frame(DATA, 0, 1, big.subarray(at, at + 16_384)));
    const sizes: [number, number][] = [];
    const result = await getFrom([...frames, frame(DATA, 0, 1, grpcMessage(Buffer.from('small'))), ok], (buf, start, end) =>
      sizes.push([end - start, buf.length]),
    );
    expect(result).toBeUndefined();
    expect(sizes[0]![0]).toBe(300 * 1024);
    expect(sizes[1]).toEqual([5, 64 * 1024]);
  });
});
