import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from '../../../shared/log/logger.js';
import { countOutcomes, LineDecoder, type FalcoInput, type FalcoSink } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Falco's program_output pipes JSON lines into a program it starts: run the
// agent as that program with `falco.stdin: true`. A pipe has no position
// to resume from; what Falco wrote before the agent stored it is Falco's to
// resend, which it does not, so lines are stored as soon as each chunk arrives.

const MAX_LINE = 1024 * 1024;

export interface StreamInputOptions {
  stream: Readable;
  sink: FalcoSink;
  builder: FalcoAlertBuilder;
  log: Logger;
  signal: AbortSignal;
  input?: FalcoInput;
}

/** Reads JSON lines until the stream ends or the signal fires; leaves the stream open for a restart. */
export function readJsonlStream(opts: StreamInputOptions): Promise<void> {
  const input = opts.input ?? 'stdin';
  const decoder = new LineDecoder(input, opts.builder, opts.log);
  let partial = '';
  // A multi-byte character may straddle two chunks.
  const utf8 = new StringDecoder('utf8');
  const store = (lines: string[]) => {
    const items = decoder.decode(lines);
    if (items.length === 0) return;
    try {
      countOutcomes(input, opts.sink.commit(items));
    } catch (e) {
      opts.log.error({ input, error: (e as Error).message, events: items.length }, 'Failed to store Falco events read from the pipe; they are lost');
    }
  };
  return new Promise<void>((resolve) => {
    const { stream, signal } = opts;
    const onData = (chunk: Buffer | string) => {
      const text = partial + (typeof chunk === 'string' ? chunk : utf8.write(chunk));
      const nl = text.lastIndexOf('\n');
      if (nl < 0) {
        partial = text;
      } else {
        partial = text.slice(nl + 1);
        store(text.slice(0, nl).split('\n'));
      }
      if (partial.length > MAX_LINE) {
        opts.log.warn({ input, bytes: partial.length }, `Skipping a line longer than ${MAX_LINE} bytes on ${input}`);
        partial = '';
      }
    };
    const finish = () => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      resolve();
    };
    const onEnd = () => {
      partial += utf8.end();
      if (partial.trim()) store([partial]);
      partial = '';
      opts.log.info({ input }, 'Falco event stream ended (Falco stopped or closed the pipe)');
      finish();
    };
    const onError = (e: Error) => {
      opts.log.error({ input, error: e.message }, 'Reading Falco events failed');
      finish();
    };
    const onAbort = () => {
      stream.pause();
      finish();
    };
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.resume();
  });
}
