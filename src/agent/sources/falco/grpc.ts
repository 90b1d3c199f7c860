import { credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { priority as PriorityEnum, serviceClient, type response } from '../../../gen/falco/outputs.js';
import type { FalcoPriority } from '../../../shared/config/falco-config.js';
import { errText, type Logger } from '../../../shared/log/logger.js';
import { Backoff, sleep } from '../../../shared/retry/backoff.js';
import { normalizeSource, timeFromTimestamp, type FalcoEvent } from './parse.js';
import { falcoEvents, type FalcoSink } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Client of Falco's legacy gRPC output API (falco.outputs.service/sub), for
// clusters still on Falco 0.43 or older; 0.44 removed the API. Falco queues
// events for gRPC readers and sends what is queued each time the reader sends
// a request on the stream, so the client asks again at a fixed interval. There
// is no acknowledgement in this protocol: an event is as safe as the agent's
// next commit (one tick after it arrives).

export interface FalcoGrpcOptions {
  address: string;
  ca_file?: string | undefined;
  cert_file?: string | undefined;
  key_file?: string | undefined;
  pollIntervalMs: number;
  reconnect: { initial_backoff: number; max_backoff: number };
  sink: FalcoSink;
  builder: FalcoAlertBuilder;
  log: Logger;
  signal: AbortSignal;
}

const PRIORITY_NAMES: Record<number, FalcoPriority> = {
  [PriorityEnum.EMERGENCY]: 'Emergency',
  [PriorityEnum.ALERT]: 'Alert',
  [PriorityEnum.CRITICAL]: 'Critical',
  [PriorityEnum.ERROR]: 'Error',
  [PriorityEnum.WARNING]: 'Warning',
  [PriorityEnum.NOTICE]: 'Notice',
  [PriorityEnum.INFORMATIONAL]: 'Informational',
  [PriorityEnum.DEBUG]: 'Debug',
};

/** A gRPC output message as a FalcoEvent; undefined when it is not a usable event. */
export function eventFromResponse(r: response): FalcoEvent | undefined {
  const priority = PRIORITY_NAMES[r.priority];
  if (!priority || !r.rule) return undefined;
  const time = r.time ? timeFromTimestamp(r.time.seconds, r.time.nanos) : undefined;
  if (!time) return undefined;
  const fields: Record<string, unknown> = { ...r.output_fields };
  const source = normalizeSource(r.source, r.rule, fields);
  const raw: Record<string, unknown> = {
    time, rule: r.rule, priority, source, hostname: r.hostname, output: r.output, tags: r.tags, output_fields: fields,
  };
  return { time, rule: r.rule, priority, source, hostname: r.hostname, output: r.output, tags: [...r.tags].sort(), output_fields: fields, raw };
}

function readFile(path: string, key: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`cannot read falco.grpc.${key} ${path}: ${(e as Error).message}; mount the file into the agent`);
  }
}

export function grpcCredentials(o: Pick<FalcoGrpcOptions, 'ca_file' | 'cert_file' | 'key_file'>): ChannelCredentials {
  if (!o.ca_file && !o.cert_file) return credentials.createInsecure();
  return credentials.createSsl(
    o.ca_file ? readFile(o.ca_file, 'ca_file') : null,
    o.key_file ? readFile(o.key_file, 'key_file') : null,
    o.cert_file ? readFile(o.cert_file, 'cert_file') : null,
  );
}

function hint(e: ServiceError): string {
  switch (e.code) {
    case status.UNIMPLEMENTED:
      return 'this Falco has no gRPC output API (removed in Falco 0.44); use http_output to the agent instead';
    case status.UNAVAILABLE:
      return 'is Falco running with grpc.enabled and grpc_output.enabled in falco.yaml, and is falco.grpc.address right?';
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return 'Falco refused the client certificate; check falco.grpc cert_file, key_file and ca_file';
    default:
      return 'the agent reconnects with backoff';
  }
}

export async function runFalcoGrpcInput(opts: FalcoGrpcOptions): Promise<void> {
  const { log, signal } = opts;
  const creds = grpcCredentials(opts);
  const backoff = new Backoff({ initialMs: opts.reconnect.initial_backoff, maxMs: Math.max(opts.reconnect.initial_backoff, opts.reconnect.max_backoff), resetAfterMs: 10 * 60_000 });
  while (!signal.aborted) {
    const client = new serviceClient(opts.address, creds, { 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
    let received = 0;
    const err = await new Promise<Error | undefined>((resolve) => {
      const call = client.sub();
      let settled = false;
      const finish = (e?: Error) => {
        if (settled) return;
        settled = true;
        clearInterval(ask);
        signal.removeEventListener('abort', onAbort);
        call.cancel();
        resolve(e);
      };
      const onAbort = () => finish();
      signal.addEventListener('abort', onAbort, { once: true });
      const ask = setInterval(() => {
        if (!settled) call.write({});
      }, opts.pollIntervalMs);
      call.on('data', (r: response) => {
        if (received++ === 0) {
          log.info({ address: opts.address }, 'Receiving Falco events over gRPC');
          backoff.reset();
        }
        const ev = eventFromResponse(r);
        if (!ev) {
          falcoEvents.inc({ input: 'grpc', outcome: 'invalid' });
          return;
        }
        const b = opts.builder.build(ev);
        if (b.skipped) {
          falcoEvents.inc({ input: 'grpc', outcome: b.skipped });
          return;
        }
        opts.sink.submit({ alert: b.alert }).then(
          (o) => falcoEvents.inc({ input: 'grpc', outcome: o }),
          (e: Error) => {
            falcoEvents.inc({ input: 'grpc', outcome: 'failed' });
            log.error({ error: e.message }, 'Failed to store a Falco event received over gRPC; it is lost');
          },
        );
      });
      call.on('error', (e: Error) => finish(e));
      call.on('end', () => finish(new Error('Falco closed the output stream')));
      call.write({});
    });
    client.close();
    if (signal.aborted) break;
    const wait = backoff.next();
    const se = err as ServiceError | undefined;
    log.warn({ address: opts.address, error: err ? errText(err) : 'stream ended', retry_in_ms: wait, received }, `Falco gRPC output stream stopped; ${se?.code !== undefined ? hint(se) : 'the agent reconnects with backoff'}`);
    await sleep(wait, signal);
  }
  // Events received just before the stop are still in the sink's queue.
  await opts.sink.drain();
}
