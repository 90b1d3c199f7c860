import { type AlertPayload, MAX_SAMPLES } from './payload.js';
import { cutSamples, fitsBytes } from './samples.js';

// How an alert too big for a message is cut to fit, where both the agent's
// gRPC message and the server's Kafka log need it: first its samples as the
// store keeps them (the newest MAX_SAMPLES, each over MAX_SAMPLE_BYTES as its
// preview), which loses nothing the server would have kept, then no samples.
// Each caller gives its own limit and encoding (the message it writes the
// alert into); the agent cuts the alert's fields as the store keeps them
// (cutToStored) before this, since it sends what the store has not cut yet.

/** What fitSamples cut, in the order it cut it. */
export type SampleCut = 'sample previews' | 'samples';

/** The alert as it fits and its encoding; `json` is undefined when even the alert without samples does not fit. */
interface SamplesFit {
  json: string | undefined;
  alert: AlertPayload;
  cut: SampleCut[];
}

/**
 * `alert` encoded by `encode` when that is at most `maxBytes` (UTF-8); else
 * the alert with its samples cut as the store keeps them, then with none,
 * whichever fits first. A step that would change nothing is skipped, and so
 * is the alert as it is when `tryAsIs` is false (the caller knows it is too big).
 */
export function fitSamples(alert: AlertPayload, maxBytes: number, encode: (a: AlertPayload) => string, tryAsIs = true): SamplesFit {
  const cut: SampleCut[] = [];
  if (tryAsIs) {
    const json = encode(alert);
    if (fitsBytes(json, maxBytes)) return { json, alert, cut };
  }
  // Fields of the wrong type are the server's to refuse: samples that are not an array are left as they are.
  const samples: readonly unknown[] = Array.isArray(alert.samples) ? alert.samples : [];
  const kept = samples.length > MAX_SAMPLES ? samples.slice(-MAX_SAMPLES) : samples;
  const previews = cutSamples(kept);
  if (kept !== samples || previews.some((s, i) => s !== kept[i])) {
    cut.push('sample previews');
    const withPreviews = { ...alert, samples: previews };
    const json = encode(withPreviews);
    if (fitsBytes(json, maxBytes)) return { json, alert: withPreviews, cut };
  }
  if (samples.length === 0) return { json: undefined, alert, cut };
  cut.push('samples');
  const without = { ...alert, samples: [] };
  const json = encode(without);
  return { json: fitsBytes(json, maxBytes) ? json : undefined, alert: without, cut };
}
