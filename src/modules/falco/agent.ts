import type { Readable } from 'node:stream';
import type { FalcoConfig } from './config.js';
import { errText } from '../../shared/log/logger.js';
import type { AgentModule, ModuleContext } from '../../agent/module.js';
import { loadFalcoDefaults } from './defaults.js';
import { zeroOutcomes } from './events.js';
import { runFalcoGrpcInput } from './grpc.js';
import { startFalcoHttpInput, type FalcoHttpInput } from './http.js';
import { followJsonlFile } from './jsonl-file.js';
import { FalcoSink } from './sink.js';
import { readJsonlStream } from './stdin.js';
import { FalcoAlertBuilder } from './to-alert.js';

// The `falco` agent module: runs the inputs its block enables and turns their
// events into alert occurrences for ctx.alerts.

export interface RunningFalco {
  /** Bound address of the HTTP input, when enabled. */
  httpAddress?: string;
  /** Stops every input and waits until what was received is stored. */
  stop(): Promise<void>;
  /** Settles when a long-running input (file, stdin, gRPC) fails or all of them end. */
  done: Promise<void>;
}

export interface StartFalcoOptions {
  /** Stream for `stdin: true` (tests); process.stdin otherwise. */
  stdin?: Readable;
  /** alerts/falco.yaml elsewhere (tests). */
  defaultsFile?: string;
  env?: NodeJS.ProcessEnv;
}

type Ctx = Pick<ModuleContext, 'db' | 'alerts' | 'log'>;

export async function startFalco(block: FalcoConfig, ctx: Ctx, opts: StartFalcoOptions = {}): Promise<RunningFalco> {
  const { log } = ctx;
  const builder = new FalcoAlertBuilder(block, loadFalcoDefaults(opts.defaultsFile), opts.env);
  if (builder.unsetEnv.length) {
    log.warn({ variables: builder.unsetEnv }, 'falco.custom_fields read environment variables that are not set; those fields are empty');
  }
  const sink = new FalcoSink(ctx.db, ctx.alerts, { uuidCacheSize: block.uuid_cache_size, windowMs: block.dedup_window, builder, log });
  const abort = new AbortController();
  const signal = abort.signal;
  const tasks: Promise<void>[] = [];
  const guard = (name: string, p: Promise<void>) =>
    tasks.push(
      p.catch((e: unknown) => {
        log.error({ input: name, error: errText(e) }, 'Falco input stopped');
      }),
    );
  let http: FalcoHttpInput | undefined;
  try {
    const { http: h, file: f, grpc: g } = block;
    if (h) zeroOutcomes('http');
    if (f) zeroOutcomes('file');
    if (block.stdin) zeroOutcomes('stdin');
    if (g) zeroOutcomes('grpc');
    if (h) {
      http = await startFalcoHttpInput({ listen: h.listen, maxBodyBytes: h.max_body_bytes, tls: h.tls, builder, sink, log });
    }
    if (f) {
      guard('file', followJsonlFile({ path: f.path, startAt: f.start_at, pollIntervalMs: f.poll_interval, db: ctx.db, sink, builder, log, signal }));
    }
    if (block.stdin) {
      guard('stdin', readJsonlStream({ stream: opts.stdin ?? process.stdin, sink, builder, log, signal }));
    }
    if (g) {
      guard(
        'grpc',
        runFalcoGrpcInput({
          address: g.address,
          ca_file: g.ca_file,
          cert_file: g.cert_file,
          key_file: g.key_file,
          pollIntervalMs: g.poll_interval,
          reconnect: g.reconnect,
          sink,
          builder,
          log,
          signal,
        }),
      );
    }
  } catch (e) {
    abort.abort();
    await Promise.all(tasks);
    await http?.close();
    await sink.close();
    throw e;
  }
  let stopped: Promise<void> | undefined;
  return {
    httpAddress: http?.address,
    done: Promise.all(tasks).then(() => undefined),
    stop: () =>
      (stopped ??= (async () => {
        abort.abort();
        await http?.close();
        await Promise.all(tasks);
        await sink.close();
      })()),
  };
}

export const falcoModule: AgentModule<FalcoConfig> = {
  name: 'falco',
  // Falco's outputs do not retry: an input closed while the server is unreachable loses events.
  startsFromKept: true,
  async run(block, ctx, signal) {
    const running = await startFalco(block, ctx);
    await new Promise<void>((resolve) => {
      if (signal.aborted) return resolve();
      signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await running.stop();
  },
};
