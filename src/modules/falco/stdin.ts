import type { Readable } from 'node:stream';
import type { Logger } from '../../shared/log/logger.js';
import { isSpoolFull } from '../../agent/spool/spool.js';
import { retryUntilDone } from '../../shared/retry/until-done.js';
import { countOutcomes, type FalcoInput } from './events.js';
import { LineDecoder } from './line-decoder.js';
import type { FalcoSink, SinkItem } from './sink.js';
import type { FalcoAlertBuilder } from './to-alert.js';

// Falco's program_output pipes JSON lines into a program it starts: run the
// agent as that program with `falco.stdin: true`. A pipe has no position to
// resume from and Falco never writes a line twice, so a line read from the pipe
// must not be dropped afterwards: lines are stored as soon as each chunk
// arrives; when storing fails the stream is paused (Falco's writes then wait in
// the pipe) and the same lines are stored again with backoff. When the input
// stops (the module restarts on a config change) an unfinished last line is put
// back into the stream for the next reader, and so are the lines still waiting
// to be stored (not stored by this reader then; nor are the lines skipped
// among them counted: the next reader counts them). A full alert spool is such a
// failure too, but waited out rather than retried with backoff: the stream is
// paused and the lines stored again once the spool has room (the sink logs
// that once per episode, not as a storage failure).

const MAX_LINE = 1024 * 1024;
const NL = 10;

interface Unstored {
  raw: Buffer[];
  events: number;
  handedBack: boolean;
}

export interface StreamInputOptions {
  stream: Readable;
  sink: FalcoSink;
  builder: FalcoAlertBuilder;
  log: Logger;
  signal: AbortSignal;
  input?: FalcoInput;
  /** First delay before storing again after a failure (tests). */
  retryInitialMs?: number;
}

/** Reads JSON lines until the stream ends or the signal fires; leaves the stream open for a restart. */
export function readJsonlStream(opts: StreamInputOptions): Promise<void> {
  const input = opts.input ?? 'stdin';
  const decoder = new LineDecoder(input, opts.builder, opts.log);
  const { stream, signal, log } = opts;
  const retryInitialMs = opts.retryInitialMs ?? 200;
  // Bytes of the unfinished last line. Split on the newline byte, which never
  // occurs inside a multi-byte UTF-8 character, so a character may straddle chunks.
  let partial: Buffer[] = [];
  let partialBytes = 0;
  let skippingLongLine = false;
  /** Stores in progress, and how many of them failed and wait for a retry: the stream stays paused while any do. */
  const storing = new Set<Promise<void>>();
  let failing = 0;
  let finished = false;
  /** The bytes of the lines of each store not done yet, in the order read: handed back to the stream if the input stops first. */
  const unstored = new Set<Unstored>();

  /**
   * Stores the items now; on failure pauses the stream and retries until
   * stored or stopped. `raw`: the bytes they were read from (none once the
   * stream ended: there is no next reader to hand them back to). `later`:
   * the counting and logging of the lines skipped among them, run unless the
   * bytes are handed back (the next reader skips and counts them itself).
   */
  const store = (items: SinkItem[], raw: Buffer[] = [], later: (() => void)[] = []): void => {
    const report = () => {
      for (const f of later) f();
      later = [];
    };
    if (items.length === 0) return report();
    let paused = false;
    let storageFailed = false;
    const rec: Unstored = { raw, events: items.length, handedBack: false };
    if (raw.length) unstored.add(rec);
    const attempt = async () => {
      for (;;) {
        // Handed back to the stream (onAbort): the next reader stores them, this one must not as well.
        if (rec.handedBack) throw new Error('handed back to the stream');
        try {
          countOutcomes(input, opts.sink.commit(items, undefined, input));
          // At once, not when the promise settles: an abort in between must not hand stored lines back.
          unstored.delete(rec);
          report();
          return;
        } catch (e) {
          // Paused at once (the first attempt runs in this turn), before the stream emits the next chunk.
          if (!paused) {
            paused = true;
            failing++;
            stream.pause();
          }
          // Refused by a full spool: tried again as soon as it has room, not after a backoff.
          if (isSpoolFull(e) && opts.sink.spoolFull && !signal.aborted) {
            await opts.sink.waitForSpoolRoom(signal);
            continue;
          }
          if (!storageFailed && !isSpoolFull(e)) {
            storageFailed = true;
            log.error(
              { input, error: (e as Error).message, events: items.length },
              "Cannot store Falco events read from the pipe; reading paused, retrying (check the agent's disk and logs)",
            );
          }
          throw e;
        }
      }
    };
    const p: Promise<void> = retryUntilDone({ backoff: { initialMs: retryInitialMs, maxMs: Math.max(retryInitialMs, 10_000) }, signal }, attempt)
      .then((r) => {
        if (rec.handedBack) return;
        report();
        if (!r.done)
          log.error(
            { input, error: (r.error as Error).message, events: items.length },
            'Could not store Falco events read from the pipe before the input stopped; they are lost',
          );
        else if (storageFailed) log.info({ input, events: items.length }, 'Stored the Falco events read from the pipe; reading again');
      })
      .finally(() => {
        unstored.delete(rec);
        storing.delete(p);
        if (paused && --failing === 0 && !finished) stream.resume();
      });
    storing.add(p);
  };

  const take = (chunk: Buffer): void => {
    let from = 0;
    const lines: string[] = [];
    // The bytes of the lines taken: an unfinished line before the chunk, and the chunk up to its last
    // newline, less the end of a line too long to take (only the first line of a chunk can be one).
    const prefix = partialBytes && !skippingLongLine ? partial : [];
    let rawFrom = 0;
    for (let nl = chunk.indexOf(NL); nl >= 0; nl = chunk.indexOf(NL, from)) {
      const piece = chunk.subarray(from, nl);
      if (skippingLongLine) {
        skippingLongLine = false;
        rawFrom = nl + 1;
      } else {
        lines.push(partialBytes ? Buffer.concat([...partial, piece]).toString('utf8') : piece.toString('utf8'));
      }
      partial = [];
      partialBytes = 0;
      from = nl + 1;
    }
    if (from < chunk.length && !skippingLongLine) {
      partial.push(chunk.subarray(from));
      partialBytes += chunk.length - from;
      if (partialBytes > MAX_LINE) {
        log.warn({ input, bytes: partialBytes }, `Skipping a line longer than ${MAX_LINE} bytes on ${input}`);
        partial = [];
        partialBytes = 0;
        skippingLongLine = true;
      }
    }
    const later: (() => void)[] = [];
    store(decoder.decode(lines, later), from > rawFrom ? [...prefix, chunk.subarray(rawFrom, from)] : [], later);
  };

  return new Promise<void>((resolve) => {
    const finish = async () => {
      if (finished) return;
      finished = true;
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      while (storing.size) await Promise.all([...storing]);
      resolve();
    };
    const onData = (chunk: Buffer | string) => take(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
    const onEnd = () => {
      // The writer closed the pipe: an unterminated last line is complete.
      if (partialBytes && !skippingLongLine) store(decoder.decode([Buffer.concat(partial).toString('utf8')]));
      partial = [];
      partialBytes = 0;
      log.info({ input }, 'Falco event stream ended (Falco stopped or closed the pipe)');
      void finish();
    };
    const onError = (e: Error) => {
      log.error({ input, error: e.message }, 'Reading Falco events failed');
      void finish();
    };
    const onAbort = () => {
      stream.pause();
      // The next reader of this stream (a restarted module) gets the lines not stored yet (the spool
      // is full, or storing fails) and the unfinished line, in the order read: a line read is not lost.
      const back: Buffer[] = [];
      let events = 0;
      for (const rec of unstored) {
        rec.handedBack = true;
        back.push(...rec.raw);
        events += rec.events;
      }
      unstored.clear();
      if (partialBytes && !skippingLongLine) back.push(...partial);
      if (back.length) stream.unshift(Buffer.concat(back));
      if (events) {
        log.warn(
          { input, events },
          'Falco input stopping with events read but not stored yet (the spool is full or storing fails): they are left in the stream for the restarted input, lost only if the agent itself stops',
        );
      }
      partial = [];
      partialBytes = 0;
      void finish();
    };
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
    stream.resume();
  });
}
