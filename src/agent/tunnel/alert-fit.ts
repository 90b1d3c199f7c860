import type { AlertPayload } from '../../shared/alert/payload.js';
import { cutSamples } from '../../shared/alert/samples.js';

// What the publisher does with an alert too big for one gRPC message: the
// samples go first, cut to previews as the server's store and its Kafka log
// cut them (shared/alert/samples.ts), since the alert's own fields are what
// makes it useful.

/** An alert payload that fits, and how much of it had to go. */
export interface Fitted {
  payload: Buffer;
  cut: 'none' | 'sample previews' | 'samples';
}

/**
 * The payload itself when it is at most `maxBytes`; else the same alert with
 * each sample over MAX_SAMPLE_BYTES (UTF-8) replaced by its preview, then without
 * samples; undefined when even that is over `maxBytes` (or it is not an
 * alert's JSON at all).
 */
export function fitPayload(payload: Buffer, maxBytes: number): Fitted | undefined {
  if (payload.length <= maxBytes) return { payload, cut: 'none' };
  let alert: AlertPayload;
  try {
    alert = JSON.parse(payload.toString('utf8')) as AlertPayload;
  } catch {
    return undefined;
  }
  if (typeof alert !== 'object' || alert === null) return undefined;
  const samples: unknown[] = Array.isArray(alert.samples) ? alert.samples : [];
  const withPreviews = Buffer.from(JSON.stringify({ ...alert, samples: cutSamples(samples) }));
  if (withPreviews.length <= maxBytes) return { payload: withPreviews, cut: 'sample previews' };
  const without = Buffer.from(JSON.stringify({ ...alert, samples: [] }));
  return without.length <= maxBytes ? { payload: without, cut: 'samples' } : undefined;
}
