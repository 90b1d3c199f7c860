import { Server, ServerCredentials, status, type ServerDuplexStream, type ServerWritableStream } from '@grpc/grpc-js';
import { priority as Priority, serviceService, type request, type response } from '../../gen/falco/outputs.js';
import type { FalcoJsonEvent } from './scenario.js';

// A stand-in for Falco's gRPC output server (Falco 0.43 and older), speaking
// falco.outputs.service on the real wire format. Like Falco it keeps events in
// one queue and, on every request a `sub` reader sends, writes out what is
// queued; `get` writes what is queued and ends.

export interface FalcoGrpcPeer {
  /** Address to dial: host:port or unix:///path. */
  address: string;
  /** Queues events; subscribers get them with their next request. */
  push(...events: FalcoJsonEvent[]): void;
  /** Ends every open subscription (as a Falco restart would). */
  dropSubscribers(): void;
  readonly subscribers: number;
  readonly queued: number;
  close(): Promise<void>;
}

const PRIORITIES: Record<string, Priority> = {
  emergency: Priority.EMERGENCY,
  alert: Priority.ALERT,
  critical: Priority.CRITICAL,
  error: Priority.ERROR,
  warning: Priority.WARNING,
  notice: Priority.NOTICE,
  informational: Priority.INFORMATIONAL,
  info: Priority.INFORMATIONAL,
  debug: Priority.DEBUG,
};

/** A Falco JSON event as Falco's gRPC output would send it (every field value a string). */
export function toGrpcResponse(ev: FalcoJsonEvent): response {
  const m = /^(.*?)(?:\.(\d+))?Z$/.exec(ev.time);
  const seconds = Math.floor(Date.parse(`${m?.[1] ?? ev.time}Z`) / 1000);
  const nanos = Number((m?.[2] ?? '').padEnd(9, '0').slice(0, 9));
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(ev.output_fields)) {
    fields[k] = v === null || v === undefined ? '<NA>' : Array.isArray(v) ? v.join(',') : String(v);
  }
  return {
    time: { seconds, nanos },
    priority: PRIORITIES[ev.priority.toLowerCase()] ?? Priority.DEBUG,
    source_deprecated: 0,
    rule: ev.rule,
    output: ev.output,
    output_fields: fields,
    hostname: ev.hostname,
    tags: ev.tags,
    source: ev.source,
  };
}

export async function startFalcoGrpcPeer(opts: { address?: string; credentials?: ServerCredentials } = {}): Promise<FalcoGrpcPeer> {
  const server = new Server();
  const queue: response[] = [];
  const subs = new Set<ServerDuplexStream<request, response>>();
  const drainTo = (call: { write(r: response): boolean }) => {
    while (queue.length) call.write(queue.shift()!);
  };
  server.addService(serviceService, {
    sub(call: ServerDuplexStream<request, response>) {
      subs.add(call);
      call.on('data', () => drainTo(call));
      const done = () => subs.delete(call);
      call.on('end', () => {
        done();
        call.end();
      });
      call.on('error', done);
      call.on('cancelled', done);
    },
    get(call: ServerWritableStream<request, response>) {
      drainTo(call);
      call.end();
    },
  });
  const want = opts.address ?? '127.0.0.1:0';
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(want, opts.credentials ?? ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  const address = want.startsWith('unix:') ? want : `${want.slice(0, want.lastIndexOf(':'))}:${port}`;
  return {
    address,
    push: (...events) => {
      for (const e of events) queue.push(toGrpcResponse(e));
    },
    dropSubscribers: () => {
      // grpc-js turns an 'error' on a server stream into the call's status.
      for (const c of subs) {
        // A dropped call must not take queued events: the client may still
        // write on it before it sees the status, and those events would vanish.
        c.removeAllListeners('data');
        c.emit('error', Object.assign(new Error('falco is restarting'), { code: status.UNAVAILABLE }));
      }
      subs.clear();
    },
    get subscribers() {
      return subs.size;
    },
    get queued() {
      return queue.length;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of subs) c.end();
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1_000).unref();
      }),
  };
}
