import { describe, expect, it } from 'vitest';
import { fitSamples } from './fit.js';
import { type AlertPayload, MAX_SAMPLES } from './payload.js';
import { MAX_SAMPLE_BYTES } from './samples.js';

// Only the samples matter to the ladder; the rest of the alert is a stand-in.
const alert = (samples: unknown[]) => ({ title: 'T', samples }) as unknown as AlertPayload;
const sample = (n: number, bytes: number) => ({ n, pad: 'p'.repeat(bytes) });
// An envelope around the alert, as the Kafka log writes it.
const encode = (a: AlertPayload) => JSON.stringify({ id: 'e', payload: a });

describe('fitting an alert by its samples', () => {
  it('encodes an alert that fits as it is, cutting nothing', () => {
    const a = alert([sample(0, 10)]);
    const json = encode(a);
    expect(fitSamples(a, Buffer.byteLength(json), encode)).toEqual({ json, alert: a, cut: [] });
  });

  it('keeps the newest MAX_SAMPLES, each over MAX_SAMPLE_BYTES as its preview, then drops them; the limit is in UTF-8 bytes of what encode gives', () => {
    const samples = Array.from({ length: MAX_SAMPLES + 2 }, (_, n) => sample(n, MAX_SAMPLE_BYTES));
    const a = alert(samples);
    const previews = fitSamples(a, 20_000, encode);
    expect(previews.cut).toEqual(['sample previews']);
    expect(previews.alert.samples).toHaveLength(MAX_SAMPLES);
    expect(previews.alert.samples[0]).toMatchObject({ truncated: true, preview: expect.stringContaining('{"n":2,') });
    expect(previews.json).toBe(encode(previews.alert));
    // Euro signs: 3 bytes each, so a limit the characters fit in but the bytes do not.
    const wide = alert([{ pad: '\u20ac'.repeat(MAX_SAMPLE_BYTES / 4) }]);
    const chars = encode(wide).length;
    expect(fitSamples(wide, chars, encode)).toEqual({ json: encode(alert([])), alert: alert([]), cut: ['samples'] });
    const none = fitSamples(a, 2_000, encode);
    expect(none).toEqual({ json: encode(alert([])), alert: alert([]), cut: ['sample previews', 'samples'] });
  });

  it('skips a step that changes nothing, and gives no JSON when even no samples do not fit', () => {
    const small = alert([sample(0, 10), sample(1, 10)]);
    expect(fitSamples(small, 30, encode)).toEqual({ json: undefined, alert: alert([]), cut: ['samples'] });
    expect(fitSamples(alert([]), 10, encode)).toEqual({ json: undefined, alert: alert([]), cut: [] });
  });

  it('does not encode the alert as it is when the caller knows it is too big', () => {
    const seen: AlertPayload[] = [];
    const a = alert([sample(0, MAX_SAMPLE_BYTES)]);
    const f = fitSamples(
      a,
      1_000_000,
      (x) => {
        seen.push(x);
        return encode(x);
      },
      false,
    );
    expect(f.cut).toEqual(['sample previews']);
    expect(seen).toEqual([f.alert]);
  });
});
