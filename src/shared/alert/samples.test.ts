import { describe, expect, it } from 'vitest';
import { cutSample, cutSamples, MAX_SAMPLE_BYTES, SAMPLE_PREVIEW_BYTES, type SamplePreview } from './samples.js';

describe('sample previews', () => {
  it('keeps an ASCII sample at the cap and cuts one a byte over to the first SAMPLE_PREVIEW_BYTES of its JSON', () => {
    // A string's JSON is the string in quotes.
    const at = 'x'.repeat(MAX_SAMPLE_BYTES - 2);
    expect(cutSample(at)).toBe(at);
    const over = { blob: 'x'.repeat(MAX_SAMPLE_BYTES) };
    const json = JSON.stringify(over);
    expect(cutSample(over)).toEqual({ truncated: true, bytes: json.length, preview: json.slice(0, SAMPLE_PREVIEW_BYTES) });
  });

  it('measures a non-ASCII sample in UTF-8 bytes: kept at the cap, cut one character over, never half a character in the preview', () => {
    // 3-byte euro signs after two ASCII letters: at the cap in bytes, about a third of it in characters.
    const at = `ab${'\u20ac'.repeat((MAX_SAMPLE_BYTES - 4) / 3)}`;
    expect(Buffer.byteLength(JSON.stringify(at))).toBe(MAX_SAMPLE_BYTES);
    expect(cutSample(at)).toBe(at);
    const over = `${at}x`;
    const p = cutSample(over) as SamplePreview;
    expect(p).toMatchObject({ truncated: true, bytes: MAX_SAMPLE_BYTES + 1 });
    // '"ab' and 681 euro signs are 2046 bytes: the 682nd would end past SAMPLE_PREVIEW_BYTES and is left out whole.
    expect(p.preview).toBe(`"ab${'\u20ac'.repeat(681)}`);
    expect(Buffer.byteLength(p.preview)).toBe(SAMPLE_PREVIEW_BYTES - 2);
    // Within the cap in characters, over it in bytes: once kept whole, now a preview.
    const wide = '\u20ac'.repeat(MAX_SAMPLE_BYTES / 2);
    expect(cutSample(wide)).toMatchObject({ truncated: true, bytes: 3 * (MAX_SAMPLE_BYTES / 2) + 2 });
    // A surrogate pair (4 bytes) is kept or left out whole.
    const emoji = cutSample('\u{1f600}'.repeat(MAX_SAMPLE_BYTES)) as SamplePreview;
    expect(emoji.preview).toBe(`"${'\u{1f600}'.repeat(511)}`);
  });

  it('cuts each sample on its own', () => {
    const small = { n: 1 };
    const [a, b] = cutSamples([small, 'y'.repeat(MAX_SAMPLE_BYTES)]);
    expect(a).toBe(small);
    expect(b).toMatchObject({ truncated: true });
  });
});
