import { credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { priority as PriorityEnum, serviceClient, type response } from '../../gen/falco/outputs.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import type { FalcoPriority } from './config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import { LogThrottle } from '../../shared/log/throttle.js';
import { retryLoop } from '../../shared/retry/loop.js';
import { retryUntilDone } from '../../shared/retry/until-done.js';
import { normalizeSource, timeFromTimestamp, type FalcoEvent } from './parse.js';
import { falcoEvents } from './events.js';
import { isSpoolFull } from '../../agent/spool/spool.js';
import type { FalcoSink } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Client of Falco's legacy gRPC output API (falco.outputs.service/sub), for
// clusters still on Falco 0.43 or older; 0.44 removed the API. Falco queues
// events for gRPC readers and sends what is queued each time the reader sends
// a request on the stream, so the client asks again at a fixed interval. There
// is no acknowledgement in this protocol and Falco never sends an event twice:
// an event is committed one tick after it arrives, and one that cannot be
// stored is kept and retried (the stream paused while many wait) rather than dropped.
// A full alert spool is handled alike, except that the events are submitted
// again as soon as the spool has room rather than after a backoff: the events
// received wait in memory and from 1,000 waiting the stream is not read, so
// Falco's own queue holds the rest (Falco cannot be told to send again, so
// nothing better is possible).

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
  /** First delay before storing a received event again after a storage failure (tests). */
  retryInitialMs?: number;
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

/**
 * falco.schema.source, the enum in field 3 (source_deprecated), the only
 * source Falco sent before the string field 9 came with plugins (0.31). 0
 * (SYSCALL) is also proto3's "not set", so it decides nothing on its own.
 */
const DEPRECATED_SOURCES: Record<number, string> = { 1: 'k8s_audit', 2: 'internal' };

/** A gRPC output message as a FalcoEvent; undefined when it is not a usable event. */
export function eventFromResponse(r: response): FalcoEvent | undefined {
  const priority = PRIORITY_NAMES[r.priority];
  if (!priority || !r.rule) return undefined;
  const time = r.time ? timeFromTimestamp(r.time.seconds, r.time.nanos) : undefined;
  if (!time) return undefined;
  const fields: Record<string, unknown> = { ...r.output_fields };
  const source = normalizeSource(r.source.trim() !== '' ? r.source : (DEPRECATED_SOURCES[r.source_deprecated] ?? ''), r.rule, fields);
  const raw: Record<string, unknown> = {
    time,
    rule: r.rule,
    priority,
    source,
    hostname: r.hostname,
    output: r.output,
    tags: r.tags,
    output_fields: fields,
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

/** How many received events may wait for a storage retry before the input stops reading from Falco. */
const MAX_RETRYING = 1_000;

/**
 * Stores received events. Falco has sent them and will not send them again:
 * when storing fails (storage failing, or too much waiting), the event is kept
 * and stored again with backoff, and the stream is paused while events wait,
 * so Falco's own queue holds the rest instead of the agent dropping them.
 */
class GrpcStorer {
  private retrying = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly paused = new Set<{ pause(): void; resume(): void }>();
  private readonly errors = new LogThrottle();

  constructor(private readonly opts: FalcoGrpcOptions) {}

  store(alert: AlertPayload, stream: { pause(): void; resume(): void }): void {
    const p = this.storeWithRetry(alert, stream).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Resolves when every received event is stored (or, once stopped, given up after a last try). */
  async settle(): Promise<void> {
    while (this.inFlight.size) await Promise.all([...this.inFlight]);
  }

  private async storeWithRetry(alert: AlertPayload, stream: { pause(): void; resume(): void }): Promise<void> {
    const { sink, log, signal } = this.opts;
    const retryInitialMs = this.opts.retryInitialMs ?? 100;
    let waiting = false;
    const wait = () => {
      if (!waiting) {
        waiting = true;
        this.retrying++;
      }
      if (this.retrying >= MAX_RETRYING) this.pause(stream);
    };
    const attempt = async () => {
      for (;;) {
        try {
          return await sink.submit({ alert });
        } catch (e) {
          // Refused by a full spool: submitted again as soon as it has room, not after a backoff.
          if (!isSpoolFull(e) || !sink.spoolFull || signal.aborted) throw e;
          wait();
          await sink.waitForSpoolRoom(signal);
        }
      }
    };
    const onBackoff = (_delay: number, e: unknown) => {
      wait();
      // A full spool is logged by the sink, once per episode.
      if (isSpoolFull(e)) return;
      const suppressed = this.errors.pass();
      if (suppressed !== undefined) {
        log.error(
          { error: (e as Error).message, waiting: this.retrying, suppressed },
          "Cannot store Falco events received over gRPC; keeping them and retrying (check the agent's disk and logs)",
        );
      }
    };
    try {
      // The wait is cut short when the input stops: then one last try.
      const r = await retryUntilDone({ backoff: { initialMs: retryInitialMs, maxMs: Math.max(retryInitialMs, 10_000) }, signal, onBackoff }, attempt);
      if (r.done) {
        falcoEvents.inc({ input: 'grpc', outcome: r.value });
      } else {
        falcoEvents.inc({ input: 'grpc', outcome: 'failed' });
        log.error(
          { error: (r.error as Error).message, rule: alert.rule },
          "Could not store a Falco event received over gRPC before the input stopped; it is lost (check the agent's disk and logs)",
        );
      }
    } finally {
      if (waiting && --this.retrying < MAX_RETRYING) this.resumeAll();
    }
  }

  private pause(stream: { pause(): void; resume(): void }): void {
    if (this.paused.has(stream)) return;
    this.paused.add(stream);
    stream.pause();
  }

  private resumeAll(): void {
    for (const s of this.paused) s.resume();
    this.paused.clear();
  }
}

export async function runFalcoGrpcInput(opts: FalcoGrpcOptions): Promise<void> {
  const { log, signal } = opts;
  const creds = grpcCredentials(opts);
  const storer = new GrpcStorer(opts);
  let received = 0;
  const backoff = {
    initialMs: opts.reconnect.initial_backoff,
    maxMs: Math.max(opts.reconnect.initial_backoff, opts.reconnect.max_backoff),
    resetAfterMs: 10 * 60_000,
  };
  const onBackoff = (wait: number, err: unknown) => {
    const se = err as ServiceError | undefined;
    log.warn(
      { address: opts.address, error: err ? errText(err) : 'stream ended', retry_in_ms: wait, received },
      `Falco gRPC output stream stopped; ${se?.code !== undefined ? hint(se) : 'the agent reconnects with backoff'}`,
    );
  };
  await retryLoop({ backoff, signal, onBackoff }, async (progress) => {
    const client = new serviceClient(opts.address, creds, { 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
    received = 0;
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
          progress();
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
        storer.store(b.alert, call);
      });
      call.on('error', (e: Error) => finish(e));
      call.on('end', () => finish(new Error('Falco closed the output stream')));
      call.write({});
    });
    client.close();
    if (err) throw err;
    return 'backoff';
  });
  // Events received just before the stop are still in the sink's queue, or waiting for a retry.
  await storer.settle();
  await opts.sink.drain();
}
