// A sample (a raw Hubble flow or Falco event behind an alert) can be big; one
// over the cap is replaced by a preview wherever it would not fit: the agent's
// gRPC message, the server's store and the Kafka log cut it the same way.
//
// Sizes are UTF-8 bytes of the sample's JSON, since that is what each of them
// counts: gRPC and Kafka (message.max.bytes) limit messages in bytes of UTF-8,
// and SQLite stores TEXT as UTF-8. A string's length counts UTF-16 units, up
// to three times fewer than the bytes of non-ASCII text.

/** A sample whose JSON is over this many UTF-8 bytes is replaced by its preview. */
export const MAX_SAMPLE_BYTES = 16 * 1024;
/** How many UTF-8 bytes of the sample's JSON its preview keeps. */
export const SAMPLE_PREVIEW_BYTES = 2048;

/** What stands for a sample over MAX_SAMPLE_BYTES: its size and the start of its JSON. */
export interface SamplePreview {
  truncated: true;
  /** UTF-8 bytes of the whole sample's JSON. */
  bytes: number;
  preview: string;
}

/**
 * Whether a string's UTF-8 form is at most `max` bytes. A UTF-16 unit takes
 * at most 3 bytes, so short strings are let through without encoding them.
 */
export function fitsBytes(s: string, max: number): boolean {
  return s.length * 3 <= max || (s.length <= max && Buffer.byteLength(s) <= max);
}

const encoder = new TextEncoder();

/** The start of `s` that a preview keeps: at most SAMPLE_PREVIEW_BYTES of UTF-8, never half a character, and those bytes. */
export function previewStart(s: string): { text: string; bytes: number } {
  // encodeInto writes whole characters only, so `read` ends on a character's boundary.
  const { read, written } = encoder.encodeInto(s, new Uint8Array(SAMPLE_PREVIEW_BYTES));
  return { text: s.slice(0, read), bytes: written };
}

/** The preview of a sample, given its JSON. */
function samplePreview(json: string): SamplePreview {
  return { truncated: true, bytes: Buffer.byteLength(json), preview: previewStart(json).text };
}

/** The sample itself when its JSON (given, or made here) is within MAX_SAMPLE_BYTES, else its preview. */
export function cutSample(sample: unknown, json: string = JSON.stringify(sample) ?? 'null'): unknown {
  return fitsBytes(json, MAX_SAMPLE_BYTES) ? sample : samplePreview(json);
}

/** Each sample cut by cutSample. */
export function cutSamples(samples: readonly unknown[]): unknown[] {
  return samples.map((s) => cutSample(s));
}
