import * as grpc from '@grpc/grpc-js';
import type { Flow, FlowFilter } from '../../gen/flow/flow.js';
import {
  NodeState,
  ObserverService,
  type GetFlowsRequest,
  type GetFlowsResponse,
  type ServerStatusRequest,
  type ServerStatusResponse,
} from '../../gen/observer/observer.js';
import type { Timestamp } from '../../gen/google/protobuf/timestamp.js';

// A Hubble Relay for tests and the demo. It speaks the real observer.Observer
// gRPC protocol (upstream field numbers) and follows Relay's documented
// behaviour: node status first, `since` inclusive (so the boundary flow
// repeats on resume), `number` = last N, `follow` streams new flows, `first`
// with `follow` is InvalidArgument, and a bounded buffer like a node's ring.

function cmpTime(a: Timestamp | undefined, b: Timestamp): number {
  if (!a) return -1;
  return a.seconds - b.seconds || a.nanos - b.nanos;
}

function matchesFilter(f: Flow, filter: FlowFilter): boolean {
  if (filter.verdict.length && !filter.verdict.includes(f.verdict)) return false;
  if (filter.event_type.length) {
    const t = f.event_type;
    if (!t || !filter.event_type.some((e) => e.type === t.type && (!e.match_sub_type || e.sub_type === t.sub_type))) return false;
  }
  if (filter.source_pod.length && !filter.source_pod.some((p) => `${f.source?.namespace}/${f.source?.pod_name}`.startsWith(p))) return false;
  if (filter.destination_pod.length && !filter.destination_pod.some((p) => `${f.destination?.namespace}/${f.destination?.pod_name}`.startsWith(p)))
    return false;
  if (filter.traffic_direction.length && !filter.traffic_direction.includes(f.traffic_direction)) return false;
  return true;
}

function passes(f: Flow, req: GetFlowsRequest): boolean {
  if (req.whitelist.length && !req.whitelist.some((w) => matchesFilter(f, w))) return false;
  if (req.blacklist.length && req.blacklist.some((b) => matchesFilter(f, b))) return false;
  return true;
}

interface Follower {
  req: GetFlowsRequest;
  call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>;
}

export interface RelayPeerOptions {
  nodeName?: string;
  /** Ring buffer size of the simulated node (Hubble's default is 4095). */
  bufferSize?: number;
}

export class HubbleRelayPeer {
  private readonly server = new grpc.Server();
  private readonly buffer: Flow[] = [];
  private readonly followers = new Set<Follower>();
  private seen = 0;
  private readonly started = Date.now();
  readonly nodeName: string;
  private readonly bufferSize: number;
  /** Every GetFlows request received, for tests that check what the agent asked. */
  readonly requests: GetFlowsRequest[] = [];

  constructor(opts: RelayPeerOptions = {}) {
    this.nodeName = opts.nodeName ?? 'kind-worker';
    this.bufferSize = opts.bufferSize ?? 4095;
    this.server.addService(ObserverService, {
      getFlows: (call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>) => this.getFlows(call),
      serverStatus: (_call: grpc.ServerUnaryCall<ServerStatusRequest, ServerStatusResponse>, cb: grpc.sendUnaryData<ServerStatusResponse>) =>
        cb(null, {
          num_flows: this.buffer.length,
          max_flows: this.bufferSize,
          seen_flows: this.seen,
          uptime_ns: (Date.now() - this.started) * 1e6,
          num_connected_nodes: 1,
          num_unavailable_nodes: 0,
          unavailable_nodes: [],
          version: 'verdict-relay-peer',
          flows_rate: 0,
        }),
    });
  }

  async listen(addr: string): Promise<string> {
    const port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return `${addr.replace(/:\d+$/, '')}:${port}`;
  }

  private getFlows(call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>): void {
    const req = call.request;
    this.requests.push(req);
    if (req.first && req.follow) {
      call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'first cannot be specified with follow' });
      return;
    }
    call.write({
      response_types: { $case: 'node_status', value: { state_change: NodeState.NODE_CONNECTED, node_names: [this.nodeName], message: '' } },
      node_name: '',
      time: undefined,
    });
    let history = this.buffer.filter((f) => passes(f, req));
    if (req.since) history = history.filter((f) => cmpTime(f.time, req.since!) >= 0);
    else if (req.number > 0) history = history.slice(-req.number);
    else if (req.follow) history = [];
    for (const f of history) this.send(call, f);
    if (!req.follow) {
      call.end();
      return;
    }
    const follower = { req, call };
    this.followers.add(follower);
    const drop = () => this.followers.delete(follower);
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
  }

  private send(call: grpc.ServerWritableStream<GetFlowsRequest, GetFlowsResponse>, f: Flow): void {
    call.write({ response_types: { $case: 'flow', value: f }, node_name: f.node_name || this.nodeName, time: f.time });
  }

  /** Adds flows as if the node observed them now. */
  push(flows: Flow[]): void {
    for (const f of flows) {
      this.seen++;
      this.buffer.push(f);
      if (this.buffer.length > this.bufferSize) this.buffer.shift();
      for (const fl of this.followers) if (passes(f, fl.req)) this.send(fl.call, f);
    }
  }

  /** Ends every open stream with UNAVAILABLE, as when Relay restarts. */
  disconnectAll(): void {
    for (const fl of this.followers) fl.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'relay peer restarting' });
    this.followers.clear();
  }

  get followerCount(): number {
    return this.followers.size;
  }

  async close(): Promise<void> {
    this.disconnectAll();
    this.server.forceShutdown();
  }
}
