import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { falcoConfig, fixtureLines, silent, store } from '../../../test/falco/helpers.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { loadFalcoDefaults } from './defaults.js';
import { FalcoSink } from './sink.js';
import { readJsonlStream } from './stdin.js';
import { FalcoAlertBuilder } from './to-alert.js';

describe('stdin input (program_output)', () => {
  it('stores lines split across chunks, a last line without newline, and skips garbage', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const stream = new PassThrough();
    const done = readJsonlStream({ stream, sink, builder, log: silent, signal: new AbortController().signal });
    const text = `${fixtureLines().join('\n')}\nnot an event\n`;
    // Split inside a multi-byte character too.
    const bytes = Buffer.from(`${text}{"rule":"Ünïcode","priority":"Notice","time":"2026-01-01T00:00:00Z"}`);
    for (let i = 0; i < bytes.length; i += 97) stream.write(bytes.subarray(i, i + 97));
    stream.end();
    await done;
    expect(s.outbox.size).toBe(8);
    const rules = s.outbox.read(0, 100).map((r) => (JSON.parse(r.payload.toString()) as { rule: string }).rule);
    expect(rules).toContain('Ünïcode');
  });

  it('skips an event nested too deep with the reason and stores the lines after it', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const { log, logs } = capturingLogger();
    const stream = new PassThrough();
    const done = readJsonlStream({ stream, sink, builder, log, signal: new AbortController().signal, retryInitialMs: 10 });
    const deep = `{"rule":"depth","priority":"Error","time":"2026-01-01T00:00:00Z","output":"o","output_fields":{"x":${'['.repeat(5000)}1${']'.repeat(5000)}}}`;
    stream.end(`${deep}\n${fixtureLines()[0]}\n`);
    await done;
    expect(s.outbox.read(0, 10).map((r) => (JSON.parse(r.payload.toString()) as { rule: string }).rule)).toEqual(['Write below binary dir']);
    expect(logs.filter((l) => l.reason !== undefined).map((l) => l.reason)).toEqual([
      expect.stringMatching(/^the event nests arrays or objects more than 32 levels deep/),
    ]);
  });

  it('stops on abort without ending the stream', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const stream = new PassThrough();
    const abort = new AbortController();
    const done = readJsonlStream({ stream, sink, builder, log: silent, signal: abort.signal });
    abort.abort();
    await done;
    expect(stream.destroyed).toBe(false);
  });

  it('keeps lines it could not store, pauses the pipe and stores them once storage works again', async () => {
    const s = store();
    let fail = true;
    let attempts = 0;
    const adder = {
      add: (a: Parameters<typeof s.alerts.add>[0], w: number, t?: () => void) => {
        attempts++;
        if (fail) throw new Error('disk full');
        s.alerts.add(a, w, t);
      },
    };
    const sink = new FalcoSink(s.db, adder, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const stream = new PassThrough();
    const done = readJsonlStream({ stream, sink, builder, log: silent, signal: new AbortController().signal, retryInitialMs: 10 });
    const lines = fixtureLines();
    stream.write(`${lines[0]}\n${lines[1]}\n`);
    await until(
      () => attempts > 1 || undefined,
      5_000,
      () => `a second attempt to store the lines (${attempts} so far)`,
    );
    expect(s.outbox.size).toBe(0);
    expect(stream.isPaused()).toBe(true);
    stream.write(`${lines[4]}\n`);
    fail = false;
    await until(
      () => s.outbox.size >= 3 || undefined,
      5_000,
      () => `the three lines in the outbox (${s.outbox.size} so far)`,
    );
    stream.end();
    await done;
    expect(s.outbox.read(0, 10).map((r) => (JSON.parse(r.payload.toString()) as { rule: string }).rule)).toEqual([
      'Write below binary dir',
      'Test rule',
      'open_from_cat',
    ]);
  });

  it('hands an unfinished line to the next reader when it stops (module restart)', async () => {
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 0, log: silent });
    const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n'), loadFalcoDefaults());
    const stream = new PassThrough();
    const line = Buffer.from(`${fixtureLines()[5]}\n`);
    const first = new AbortController();
    const done = readJsonlStream({ stream, sink, builder, log: silent, signal: first.signal });
    stream.write(line.subarray(0, 40));
    await new Promise((r) => setImmediate(r));
    first.abort();
    await done;
    expect(s.outbox.size).toBe(0);
    const again = readJsonlStream({ stream, sink, builder, log: silent, signal: new AbortController().signal });
    stream.end(line.subarray(40));
    await again;
    expect(s.outbox.size).toBe(1);
    expect((JSON.parse(s.outbox.read(0, 1)[0]!.payload.toString()) as { rule: string }).rule).toBe('Terminal shell in container');
  });
});
