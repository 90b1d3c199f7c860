import { Counter } from 'prom-client';
import { type Flow, Verdict } from '../../gen/flow/flow.js';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import { GetFlowsResponse, ObserverService, type GetFlowsRequest } from '../../gen/observer/observer.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { FlowCursor } from './flow-cursor.js';
import { decodeFlow, nodeNameAt } from './flow-decode.js';
import { h2cCall } from './h2c-call.js';

/** Flows received since the metric was last read: added to it when it is read (an inc() per flow cost as much as a flow's cursor work). */
let flowsReceived = 0;
new Counter({
  name: 'verdict_agent_hubble_flows_total',
  help: 'Flows received from Hubble Relay',
  registers: [registry],
  collect() {
    this.inc(flowsReceived);
    flowsReceived = 0;
  },
});
const flowsLost = new Counter({
  name: 'verdict_agent_hubble_lost_events_total',
  help: 'Events Hubble reported as lost (ring buffer overrun)',
  registers: [registry],
});

/** Monitor event types that carry drops: drop (1), policy verdict (5), L7 access log (129). */
export const DROP_EVENT_TYPES = [1, 5, 129];

export function droppedFlowsRequest(cursor: FlowCursor): GetFlowsRequest {
  return {
    number: 0,
    follow: true,
    blacklist: [],
    whitelist: [
      {
        source_ip: [],
        source_pod: [],
        destination_ip: [],
        destination_pod: [],
        verdict: [Verdict.DROPPED],
        event_type: DROP_EVENT_TYPES.map((type) => ({ type, match_sub_type: false, sub_type: 0 })),
        source_label: [],
        destination_label: [],
        protocol: [],
        source_port: [],
        destination_port: [],
        node_name: [],
        traffic_direction: [],
        drop_reason_desc: [],
      },
    ],
    since: cursor.since,
    until: undefined,
    first: false,
    field_mask: undefined,
  };
}

export interface RelayOptions {
  address: string;
  backoff: BackoffOptions;
  cursor: FlowCursor;
  log: Logger;
  signal: AbortSignal;
  /**
   * Called for each new dropped flow, after boundary repeats are removed, with
   * the flow's bytes as received: a view of the receive buffer, whose bytes
   * are overwritten after the call (copy them to keep them).
   */
  onFlow: (flow: Flow, nodeName: string, bytes: Uint8Array) => void;
  /**
   * Called when a stream ends: save what was handled, the cursor with it
   * (default: the cursor alone, for callers that store nothing).
   */
  onStreamEnd?: () => void;
}

/**
 * Follows dropped flows from a Hubble Relay until the signal aborts. After a
 * disconnect it resumes with since = the last flow time it saw, backing off
 * exponentially between attempts.
 */
export async function followDroppedFlows(o: RelayOptions): Promise<void> {
  const onBackoff = (delay: number, err: unknown) => {
    o.log.warn(
      { relay: o.address, error: err ? (err as Error).message : 'stream ended', retry_in_ms: delay },
      'Hubble Relay stream failed; resuming from the last flow seen after backoff',
    );
  };
  await retryLoop({ backoff: o.backoff, signal: o.signal, onBackoff }, async (progress) => {
    let connected = false;
    const err = await getFlows(o.address, droppedFlowsRequest(o.cursor), o.signal, (reader, buf, start, end) => {
      if (!connected) {
        connected = true;
        o.log.info({ relay: o.address }, 'Connected to Hubble Relay');
      }
      progress();
      const flow = readFlow(reader, buf, start, end);
      if (flow) {
        flowsReceived++;
        if (o.cursor.advance(flow.flow, flow.bytes)) o.onFlow(flow.flow, flow.nodeName, flow.bytes);
        return;
      }
      const msg = buf.subarray(start, end);
      const res = GetFlowsResponse.decode(msg);
      const r = res.response_types;
      if (!r) return;
      if (r.$case === 'flow') {
        flowsReceived++;
        const bytes = flowField(msg);
        if (o.cursor.advance(r.value, bytes)) o.onFlow(r.value, res.node_name, bytes);
      } else if (r.$case === 'lost_events') {
        flowsLost.inc(r.value.num_events_lost);
        o.log.warn(
          { lost: r.value.num_events_lost, node_name: res.node_name },
          'Hubble lost events before Verdict could read them; drops in that window cannot be alerted on',
        );
      } else if (r.$case === 'node_status') {
        o.log.info({ state: r.value.state_change, nodes: r.value.node_names, message: r.value.message }, 'Hubble node status');
      }
    });
    (o.onStreamEnd ?? (() => o.cursor.persist()))();
    if (err) throw err;
    return 'backoff';
  });
}

/** What readFlow finds in a message: one object, filled again for each flow (its reader takes it apart at once). */
interface ReadFlow {
  flow: Flow;
  nodeName: string;
  bytes: Uint8Array;
}
const found: ReadFlow = { flow: undefined as unknown as Flow, nodeName: '', bytes: new Uint8Array(0) };

/**
 * A GetFlowsResponse that carries a flow, read in one pass with the receive buffer's
 * reader `r` (the flow decoded where it lies, its bytes kept for the cursor);
 * undefined for any other message, which GetFlowsResponse.decode reads. The
 * message is buf[start, end); `r` reads buf.
 */
function readFlow(r: BinaryReader, buf: Uint8Array, start: number, end: number): ReadFlow | undefined {
  r.pos = start;
  // The reader's end, read-only in its type, is a plain field that bounds every read: the message's end.
  (r as { len: number }).len = end;
  let flow: Flow | undefined;
  let bytes: Uint8Array = NO_BYTES;
  let nodeName = '';
  while (r.pos < r.len) {
    // The tag read as a number: tag() returns a new array for each field.
    const tag = r.uint32();
    const no = tag >>> 3;
    const wt = (tag & 7) as WireType;
    if (no === 1 && wt === WireType.LengthDelimited) {
      const len = r.uint32();
      const at = r.pos;
      if (at + len > r.len) throw new RangeError('premature EOF');
      flow = decodeFlow(r, buf, at, len);
      bytes = buf.subarray(at, at + len);
    } else if (no === 1000 && wt === WireType.LengthDelimited) {
      const lenAt = r.pos;
      const len = r.uint32();
      const at = r.pos;
      if (at + len > r.len) throw new RangeError('premature EOF');
      nodeName = nodeNameAt(r, buf, lenAt, at, len);
      r.pos = at + len;
    } else if (no === 2 || no === 3 || no === 0) return undefined;
    else r.skip(wt, no);
  }
  if (!flow) return undefined;
  found.flow = flow;
  found.nodeName = nodeName;
  found.bytes = bytes;
  return found;
}

const NO_BYTES = new Uint8Array(0);

/** The bytes of field 1 (flow) of an encoded GetFlowsResponse. */
function flowField(buf: Uint8Array): Uint8Array {
  const r = new BinaryReader(buf);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) {
      const len = r.uint32();
      return buf.subarray(r.pos, r.pos + len);
    }
    r.skip(wt, no);
  }
  return NO_BYTES;
}

const MAX_MESSAGE = 16 * 1024 * 1024;
/** The receive buffer's size, room for many flows; it grows for a larger message and shrinks back after it. */
const RECV = 64 * 1024;

/**
 * One GetFlows call (h2c-call.ts), until it ends: resolves with why
 * (undefined for a clean end). Messages are found in the response's bytes
 * and handed to `onMessage` (as their place in the receive buffer, with one
 * reader of it) in the same turn, in order: a generic gRPC client would hand
 * them over one by one through its interceptors and streams, which costs
 * more than the flow's decoding and matching. A handler that throws ends the
 * call with that error; one that aborts the signal gets no more messages.
 */
export async function getFlows(
  address: string,
  req: GetFlowsRequest,
  signal: AbortSignal,
  onMessage: (r: BinaryReader, buf: Uint8Array, start: number, end: number) => void,
): Promise<Error | undefined> {
  // Received bytes are copied into one buffer, read by one reader, for the
  // whole call: a view, a reader and a DataView made for each piece cost more
  // than copying its bytes. What a piece ends with (part of a message) moves
  // to the front.
  let recv = new Uint8Array(RECV);
  let reader = new BinaryReader(recv);
  let held = 0;
  // Read for each message: a local flag costs less than the signal's getter.
  let stopped = signal.aborted;
  const stop = () => {
    stopped = true;
  };
  signal.addEventListener('abort', stop, { once: true });
  const err = await h2cCall({
    address,
    path: '/observer.Observer/GetFlows',
    request: ObserverService.getFlows.requestSerialize(req),
    signal,
    onData: (piece, from, to) => {
      const total = held + to - from;
      if (total > recv.length) {
        const bigger = new Uint8Array(Math.max(total, recv.length * 2));
        bigger.set(recv.subarray(0, held));
        recv = bigger;
        reader = new BinaryReader(recv);
      }
      piece.copy(recv, held, from, to);
      const buf = recv;
      let at = 0;
      while (total - at >= 5 && !stopped) {
        const len = ((buf[at + 1]! << 24) | (buf[at + 2]! << 16) | (buf[at + 3]! << 8) | buf[at + 4]!) >>> 0;
        if (buf[at] !== 0) throw new Error('INTERNAL: Relay sent a compressed message, which was not asked for');
        if (len > MAX_MESSAGE) throw new Error(`RESOURCE_EXHAUSTED: a message of ${len} bytes is over ${MAX_MESSAGE}`);
        if (total - at - 5 < len) break;
        onMessage(reader, buf, at + 5, at + 5 + len);
        at += 5 + len;
      }
      held = total - at;
      if (held > 0 && at > 0) buf.copyWithin(0, at, total);
      // A large message grew the buffer (to up to twice 16 MiB): not kept for the rest of the call.
      if (recv.length > RECV && held <= RECV) {
        recv = recv.slice(0, RECV);
        reader = new BinaryReader(recv);
      }
    },
  });
  signal.removeEventListener('abort', stop);
  if (!err && held > 0 && !stopped) return new Error('INTERNAL: Relay ended the stream in the middle of a message');
  return err;
}
