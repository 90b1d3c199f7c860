import * as grpc from '@grpc/grpc-js';
import { Counter } from 'prom-client';
import { Verdict, type Flow } from '../../gen/flow/flow.js';
import { ObserverClient, type GetFlowsRequest, type GetFlowsResponse } from '../../gen/observer/observer.js';
import type { Logger } from '../../shared/log/logger.js';
import { registry } from '../../shared/metrics/registry.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { retryLoop } from '../../shared/retry/loop.js';
import type { FlowCursor } from './flow-cursor.js';

const flowsReceived = new Counter({ name: 'verdict_agent_hubble_flows_total', help: 'Flows received from Hubble Relay', registers: [registry] });
const flowsLost = new Counter({ name: 'verdict_agent_hubble_lost_events_total', help: 'Events Hubble reported as lost (ring buffer overrun)', registers: [registry] });

/** Monitor event types that carry drops: drop (1), policy verdict (5), L7 access log (129). */
export const DROP_EVENT_TYPES = [1, 5, 129];

export function droppedFlowsRequest(cursor: FlowCursor): GetFlowsRequest {
  return {
    number: 0,
    follow: true,
    blacklist: [],
    whitelist: [{
      source_ip: [], source_pod: [], destination_ip: [], destination_pod: [],
      verdict: [Verdict.DROPPED],
      event_type: DROP_EVENT_TYPES.map((type) => ({ type, match_sub_type: false, sub_type: 0 })),
      source_label: [], destination_label: [], protocol: [], source_port: [], destination_port: [],
      node_name: [], traffic_direction: [], drop_reason_desc: [],
    }],
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
  /** Called for each new dropped flow, after boundary repeats are removed. */
  onFlow: (flow: Flow, nodeName: string) => void;
}

/**
 * Follows dropped flows from a Hubble Relay until the signal aborts. After a
 * disconnect it resumes with since = the last flow time it saw, backing off
 * exponentially between attempts.
 */
export async function followDroppedFlows(o: RelayOptions): Promise<void> {
  const client = new ObserverClient(o.address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const onBackoff = (delay: number, err: unknown) => {
    const e = err as grpc.ServiceError | undefined;
    o.log.warn({ relay: o.address, error: e ? (e.details || e.message) : 'stream ended', retry_in_ms: delay }, 'Hubble Relay stream failed; resuming from the last flow seen after backoff');
  };
  try {
    await retryLoop({ backoff: o.backoff, signal: o.signal, onBackoff }, async (progress) => {
      const err = await new Promise<unknown>((resolve) => {
        const call = client.getFlows(droppedFlowsRequest(o.cursor));
        const onAbort = () => call.cancel();
        o.signal.addEventListener('abort', onAbort, { once: true });
        let connected = false;
        call.on('data', (res: GetFlowsResponse) => {
          if (!connected) {
            connected = true;
            o.log.info({ relay: o.address }, 'Connected to Hubble Relay');
          }
          progress();
          const r = res.response_types;
          if (!r) return;
          if (r.$case === 'flow') {
            flowsReceived.inc();
            try {
              if (o.cursor.advance(r.value)) o.onFlow(r.value, res.node_name);
            } catch (e) {
              // Thrown from a data handler it would be an uncaught exception: end this stream instead.
              o.signal.removeEventListener('abort', onAbort);
              call.cancel();
              resolve(e);
            }
          } else if (r.$case === 'lost_events') {
            flowsLost.inc(r.value.num_events_lost);
            o.log.warn({ lost: r.value.num_events_lost, node_name: res.node_name }, 'Hubble lost events before Verdict could read them; drops in that window cannot be alerted on');
          } else if (r.$case === 'node_status') {
            o.log.info({ state: r.value.state_change, nodes: r.value.node_names, message: r.value.message }, 'Hubble node status');
          }
        });
        call.on('error', (e) => {
          o.signal.removeEventListener('abort', onAbort);
          resolve(e);
        });
        call.on('end', () => {
          o.signal.removeEventListener('abort', onAbort);
          resolve(undefined);
        });
      });
      o.cursor.persist();
      if (err) throw err;
      return 'backoff';
    });
  } finally {
    client.close();
  }
}
