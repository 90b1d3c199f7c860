import { describe, expect, it } from 'vitest';
import { fitAlert } from './fit.js';
import { type AlertPayload, MAX_SAMPLES } from './payload.js';
import { MAX_SAMPLE_BYTES, SAMPLE_PREVIEW_BYTES } from './samples.js';

// Only the samples matter to the ladder; the rest of the alert is a stand-in.
const alert = (samples: unknown[]) => ({ title: 'T', samples }) as unknown as AlertPayload;
const sample = (n: number, bytes: number) => ({ n, pad: 'p'.repeat(bytes) });
// An envelope around the alert, as the Kafka log writes it.
const encode = (a: AlertPayload) => JSON.stringify({ id: 'e', payload: a });

describe('fitting an alert by its samples (fitAlert)', () => {
  it('encodes an alert that fits as it is, cutting nothing', () => {
    const a = alert([sample(0, 10)]);
    const json = encode(a);
    expect(fitAlert(a, Buffer.byteLength(json), encode)).toEqual({ json, alert: a, cut: [], details: [] });
  });

  it('keeps the newest MAX_SAMPLES, each over MAX_SAMPLE_BYTES as its preview, then drops them; the limit is in UTF-8 bytes of what encode gives', () => {
    const samples = Array.from({ length: MAX_SAMPLES + 2 }, (_, n) => sample(n, MAX_SAMPLE_BYTES));
    const a = alert(samples);
    const previews = fitAlert(a, 20_000, encode);
    expect(previews.cut).toEqual(['oldest samples', 'sample previews']);
    expect(previews.alert.samples).toHaveLength(MAX_SAMPLES);
    expect(previews.alert.samples[0]).toMatchObject({ truncated: true, preview: expect.stringContaining('{"n":2,') });
    expect(previews.json).toBe(encode(previews.alert));
    // Euro signs: 3 bytes each, so a limit the characters fit in but the bytes do not.
    const wide = alert([{ pad: '\u20ac'.repeat(MAX_SAMPLE_BYTES / 4) }]);
    const chars = encode(wide).length;
    expect(fitAlert(wide, chars, encode)).toEqual({ json: encode(alert([])), alert: alert([]), cut: ['samples'], details: [] });
    const none = fitAlert(a, 2_000, encode);
    expect(none).toEqual({ json: encode(alert([])), alert: alert([]), cut: ['oldest samples', 'sample previews', 'samples'], details: [] });
  });

  it('skips a step that changes nothing, and gives no JSON when even no samples do not fit', () => {
    const small = alert([sample(0, 10), sample(1, 10)]);
    expect(fitAlert(small, 30, encode)).toEqual({ json: undefined, alert: alert([]), cut: ['samples'], details: [] });
    expect(fitAlert(alert([]), 10, encode)).toEqual({ json: undefined, alert: alert([]), cut: [], details: [] });
  });

  it('does not encode the alert as it is when the caller knows it is too big', () => {
    const seen: AlertPayload[] = [];
    const a = alert([sample(0, MAX_SAMPLE_BYTES)]);
    const f = fitAlert(
      a,
      1_000_000,
      (x: AlertPayload) => {
        seen.push(x);
        return encode(x);
      },
      false,
    );
    expect(f.cut).toEqual(['sample previews']);
    expect(seen).toEqual([f.alert]);
  });
});

// A Falco alert as the agent makes it, with the output fields given.
const falco = (output_fields: Record<string, unknown>, output = 'out', samples: unknown[] = []) =>
  ({
    schema: 'verdict.alert/v1',
    source: 'falco',
    fingerprint: 'f',
    severity: 'high',
    title: 'Big output',
    description: output.slice(0, 100),
    cluster: 'c',
    namespace: 'n',
    count: 1,
    first_seen: '2026-01-01T00:00:00Z',
    last_seen: '2026-01-01T00:00:00Z',
    policies: [],
    rule: 'r',
    labels: { pod: 'p' },
    falco: { rule: 'r', priority: 'Error', source: 'syscall', hostname: 'h', output, tags: ['t'], output_fields },
    samples,
  }) as AlertPayload;
const MB = 1_000_000;
// The limits the callers use: the agent's gRPC message (10 MiB) and the Kafka log's (900 KiB).
const GRPC = 10 * 1024 * 1024;
const KAFKA = 900 * 1024;
const fields = (a: AlertPayload) => a.falco!.output_fields;

describe('fitting an alert by its details (fitAlert)', () => {
  it('cuts whole the values it previewed when the previews alone are too big, each marked with its size as it came', () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 500; i++) many[`f${i}`] = 'x'.repeat(20 * 1024);
    const f = fitAlert(falco(many), KAFKA, encode);
    expect(f.json).toBeDefined();
    expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(KAFKA);
    expect(f.cut).toEqual(['detail previews', 'details']);
    const values = Object.values(fields(f.alert) as Record<string, string>);
    const whole = values.filter((v) => !v.includes('…'));
    expect(whole.length).toBeGreaterThan(0);
    expect(new Set(whole)).toEqual(new Set(['[cut 20480 of 20480 bytes]']));
  });

  it('cuts a huge detail string to its first SAMPLE_PREVIEW_BYTES and a marker of how much went, and keeps the rest, samples too', () => {
    const big = 'x'.repeat(12 * MB);
    const a = falco({ 'proc.cmdline': big, 'proc.name': 'sh', 'evt.num': 7 }, 'out', [sample(0, 100)]);
    for (const max of [GRPC, KAFKA]) {
      const f = fitAlert(a, max, encode);
      expect(f.cut).toEqual(['detail previews']);
      expect(f.details).toEqual(['falco.output_fields.proc.cmdline']);
      expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(max);
      expect(f.json).toBe(encode(f.alert));
      expect(fields(f.alert)).toEqual({
        'proc.cmdline': `${'x'.repeat(SAMPLE_PREVIEW_BYTES)}…[cut ${12 * MB - SAMPLE_PREVIEW_BYTES} of ${12 * MB} bytes]`,
        'proc.name': 'sh',
        'evt.num': 7,
      });
      expect({ ...f.alert, falco: undefined }).toEqual({ ...a, falco: undefined });
    }
    // The alert given is not changed, and one that fits is left whole.
    expect(fields(a)['proc.cmdline']).toBe(big);
    const small = falco({ 'proc.cmdline': 'x'.repeat(100_000) }, 'y'.repeat(100_000), [sample(0, 100)]);
    expect(fitAlert(small, KAFKA, encode)).toEqual({ json: encode(small), alert: small, cut: [], details: [] });
  });

  it('keeps big samples as their previews when previewing the details is enough, and drops samples only before cutting details whole', () => {
    // A Falco event with a 12 MB output field, and samples of 20 KB: each sample's preview is small, the field is not.
    const samples = [0, 1, 2].map((n) => sample(n, 20_000));
    const a = falco({ 'proc.cmdline': 'x'.repeat(12 * MB), 'proc.name': 'sh' }, 'out', samples);
    for (const max of [GRPC, KAFKA]) {
      const f = fitAlert(a, max, encode);
      expect(f.cut).toEqual(['sample previews', 'detail previews']);
      expect(f.details).toEqual(['falco.output_fields.proc.cmdline']);
      expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(max);
      expect(f.alert.samples).toEqual(
        samples.map((s) => ({ truncated: true, bytes: JSON.stringify(s).length, preview: expect.stringMatching(/^\{"n":\d,"pad":"p+$/) })),
      );
    }
    // Every step, each losing more than the one before: what the store cuts, sample previews, detail previews, no samples, details cut whole.
    const many: Record<string, string> = {};
    for (let i = 0; i < 500; i++) many[`f${i}`] = 'x'.repeat(20 * 1024);
    const all = {
      ...falco(
        many,
        'out',
        Array.from({ length: MAX_SAMPLES + 1 }, (_, n) => sample(n, 20_000)),
      ),
      description: 'd'.repeat(10_000),
    };
    const f = fitAlert(all, KAFKA, encode);
    expect(f.cut).toEqual(['description', 'oldest samples', 'sample previews', 'detail previews', 'samples', 'details']);
    expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(KAFKA);
    expect(f.alert.samples).toEqual([]);
  });

  it('cuts an object whose field names alone are huge, and nothing small beside it', () => {
    // One output field named by 12 MB: the object holding it goes whole, the 24-byte output beside it stays.
    const output = 'A shell was spawned (ok)';
    const key = 'k'.repeat(12 * MB);
    const a = falco({ [key]: 1, 'proc.name': 'sh' }, output);
    for (const max of [GRPC, KAFKA]) {
      const f = fitAlert(a, max, encode);
      expect(f.cut).toEqual(['details']);
      expect(f.details).toEqual(['falco.output_fields']);
      const bytes = Buffer.byteLength(JSON.stringify(fields(a)));
      expect(fields(f.alert)).toEqual({ '…': `[cut ${bytes} of ${bytes} bytes]` });
      expect(f.alert.falco).toEqual({ ...a.falco, output_fields: fields(f.alert) });
      expect(f.alert.falco!.output).toBe(output);
      expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(max);
    }
    expect(Object.keys(fields(a))).toEqual([key, 'proc.name']);
  });

  it('cuts objects holding thousands of short values rather than the values one by one', () => {
    // 300 objects of 300 strings of 40 bytes: each string's marker would save 20 bytes.
    const nested: Record<string, Record<string, string>> = {};
    for (let i = 0; i < 300; i++) {
      const o: Record<string, string> = {};
      for (let j = 0; j < 300; j++) o[`s${j}`] = 'v'.repeat(40);
      nested[`o${i}`] = o;
    }
    const f = fitAlert(falco(nested), KAFKA, encode);
    expect(f.cut).toEqual(['details']);
    expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(KAFKA);
    expect(f.details.length).toBeGreaterThan(0);
    for (const d of f.details) expect(d).toMatch(/^falco\.output_fields\.o\d+$/);
    const out = fields(f.alert) as Record<string, Record<string, string>>;
    const whole = Object.keys(out).filter((k) => out[k]!['…'] === undefined);
    // No more than needed, and what is left is whole.
    expect(whole.length).toBeGreaterThan(0);
    for (const k of whole) expect(out[k]).toEqual(nested[k]);
    const last = out[f.details.at(-1)!.slice('falco.output_fields.'.length)];
    expect(Buffer.byteLength(f.json!) + JSON.stringify(nested.o0).length - Buffer.byteLength(JSON.stringify(last))).toBeGreaterThan(KAFKA);
  });

  it('marks an object cut whole with its size as it came, previews in it counted whole', () => {
    const names: Record<string, unknown> = { 'proc.cmdline': 'x'.repeat(MB) };
    for (let i = 0; i < 60_000; i++) names[`custom.field.number.${i}`] = i;
    const f = fitAlert(falco(names), KAFKA, encode);
    expect(f.details).toEqual(['falco.output_fields.proc.cmdline', 'falco.output_fields']);
    const bytes = Buffer.byteLength(JSON.stringify(names));
    expect(fields(f.alert)).toEqual({ '…': `[cut ${bytes} of ${bytes} bytes]` });
  });

  it('cuts a huge output the same way, never leaving half a character', () => {
    const out = `a${'\u20ac'.repeat(4 * MB)}`;
    const f = fitAlert(falco({}, out), GRPC, encode);
    expect(f.details).toEqual(['falco.output']);
    const kept = f.alert.falco!.output;
    // "a" and 682 euro signs are 2047 bytes; the next one would pass 2048.
    expect(kept).toBe(`a${'\u20ac'.repeat(682)}…[cut ${12 * MB + 1 - 2047} of ${12 * MB + 1} bytes]`);
  });

  it('drops whole values, biggest first, when many fields of a few KiB are too much, naming them and marking each', () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 3000; i++) many[`f${i}`] = String(i % 10).repeat(1000 + i);
    const a = falco(many);
    const f = fitAlert(a, KAFKA, encode);
    expect(f.cut).toEqual(['details']);
    const bytes = Buffer.byteLength(f.json!);
    expect(bytes).toBeLessThanOrEqual(KAFKA);
    const out = fields(f.alert) as Record<string, string>;
    expect(Object.keys(out)).toEqual(Object.keys(many));
    // The biggest went first: f2999 down to some fN, and nothing below it.
    const dropped = Object.keys(many).filter((k) => out[k] !== many[k]);
    expect(f.details).toEqual(dropped.map((k) => `falco.output_fields.${k}`).reverse());
    const lowest = Number(dropped[0]!.slice(1));
    expect(dropped).toEqual(Array.from({ length: 3000 - lowest }, (_, i) => `f${lowest + i}`));
    for (const k of dropped) expect(out[k]).toBe(`[cut ${many[k]!.length} of ${many[k]!.length} bytes]`);
    // No more than needed: keeping the last one dropped would not have fitted.
    expect(bytes + many[dropped[0]!]!.length - out[dropped[0]!]!.length).toBeGreaterThan(KAFKA);
  });

  it('cuts lists and, when the names alone are too many, whole objects, keeping each field of its type', () => {
    const list = Array.from({ length: 100_000 }, (_, i) => `item-${i}`);
    const withList = fitAlert(falco({ 'fd.names': list, 'proc.name': 'sh' }), KAFKA, encode);
    expect(fields(withList.alert)).toEqual({
      'fd.names': [`[cut ${Buffer.byteLength(JSON.stringify(list))} of ${Buffer.byteLength(JSON.stringify(list))} bytes]`],
      'proc.name': 'sh',
    });
    const names: Record<string, number> = {};
    for (let i = 0; i < 60_000; i++) names[`custom.field.number.${i}`] = i;
    const a = falco(names, 'x'.repeat(100_000));
    const f = fitAlert(a, KAFKA, encode);
    expect(f.cut).toEqual(['detail previews', 'details']);
    expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(KAFKA);
    expect(fields(f.alert)).toEqual({ '…': expect.stringMatching(/^\[cut (\d+) of \1 bytes\]$/) });
    expect(f.details).toEqual(['falco.output', 'falco.output_fields']);
    expect(f.alert.falco).toMatchObject({ rule: 'r', hostname: 'h', tags: ['t'] });
  });

  it('cuts a field named __proto__ like any other', () => {
    const a = JSON.parse(JSON.stringify(falco({}))) as AlertPayload;
    a.falco!.output_fields = JSON.parse(`{"__proto__": "${'x'.repeat(2 * MB)}", "proc.name": "sh"}`) as Record<string, unknown>;
    const f = fitAlert(a, KAFKA, encode);
    expect(f.details).toEqual(['falco.output_fields.__proto__']);
    expect(Buffer.byteLength(f.json!)).toBeLessThanOrEqual(KAFKA);
    expect(Object.getOwnPropertyDescriptor(fields(f.alert), '__proto__')?.value).toMatch(/^x{2048}…\[cut/);
  });

  it("cuts Cilium's details alike", () => {
    const url = `/search?q=${'q'.repeat(2 * MB)}`;
    const a = {
      ...falco({}),
      source: 'cilium',
      falco: undefined,
      cilium: { direction: 'ingress', http: { method: 'GET', url }, source: { pod: 'a' } },
    } as unknown as AlertPayload;
    const f = fitAlert(a, KAFKA, encode);
    expect(f.details).toEqual(['cilium.http.url']);
    expect(f.alert.cilium!.http!.url).toMatch(/^\/search\?q=q+…\[cut \d+ of \d+ bytes\]$/);
  });

  it('refuses only an alert whose fields no step cuts are too big, however small its details are cut', () => {
    const f = fitAlert({ ...falco({ 'proc.cmdline': 'x'.repeat(2 * MB) }), rule: 'r'.repeat(KAFKA) }, KAFKA, encode);
    expect(f.json).toBeUndefined();
    expect(f.cut).toEqual(['detail previews', 'details']);
  });
});
