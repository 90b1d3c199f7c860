import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { falcoConfig, fixtureLines, silent, store } from '../../../../test/falco/helpers.js';
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
});
