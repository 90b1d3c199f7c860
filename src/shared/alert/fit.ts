import { DetailCut } from './details.js';
import { cutToStored, type StoredCut } from './fields.js';
import type { AlertPayload } from './payload.js';
import { cutSamples, fitsBytes } from './samples.js';

// How an alert too big for a message is cut to fit, where both the agent's
// gRPC message and the server's Kafka log need it: first as the store keeps
// every alert (its title, description and labels cut, the newest MAX_SAMPLES
// samples, each over MAX_SAMPLE_BYTES as its preview), which loses nothing
// the server would have kept, then no samples, then its details (details.ts):
// each long string to its preview, then whole values, biggest first, until it
// fits. An alert is never refused for its details; only one whose fields that
// no step cuts (rule, namespace, policies, labels' names) are too big is.
// Each caller gives its own limit and encoding (the message it writes the
// alert into).

/** A step of fitAlert that cut something, in the order they are taken. */
export type FitCut = StoredCut | 'sample previews' | 'samples' | 'detail previews' | 'details';

/** The alert as it fits and its encoding; `json` is undefined when even the alert cut as far as it goes does not fit. */
export interface AlertFit {
  json: string | undefined;
  alert: AlertPayload;
  /** The steps that cut something, in order. */
  cut: FitCut[];
  /** The names of the detail values cut (`falco.output_fields.proc.cmdline`), in the order they were cut. */
  details: string[];
}

/**
 * `alert` encoded by `encode` when that is at most `maxBytes` (UTF-8); else
 * the alert cut by each step in turn until it fits: its fields as the store
 * keeps them (cutToStored), each sample over MAX_SAMPLE_BYTES as its preview,
 * no samples, each detail string over MAX_SAMPLE_BYTES as its preview, then
 * detail values cut whole, biggest first. A step that would
 * change nothing is skipped, and so is the alert as it is when `tryAsIs` is
 * false (the caller knows it is too big). `encode` must hold the alert's JSON
 * once, as an envelope around it does.
 */
export function fitAlert(alert: AlertPayload, maxBytes: number, encode: (a: AlertPayload) => string, tryAsIs = true): AlertFit {
  const cut: FitCut[] = [];
  const done = (a: AlertPayload, json: string | undefined, details: string[] = []): AlertFit => ({ json, alert: a, cut, details });
  let asIs: string | undefined;
  if (tryAsIs) {
    asIs = encode(alert);
    if (fitsBytes(asIs, maxBytes)) return done(alert, asIs);
  }
  const stored = cutToStored(alert);
  if (stored.cut.length > 0) {
    cut.push(...stored.cut);
    alert = stored.alert;
    asIs = encode(alert);
    if (fitsBytes(asIs, maxBytes)) return done(alert, asIs);
  }
  // Fields of the wrong type are the server's to refuse: samples that are not an array are left as they are.
  const samples: readonly unknown[] = Array.isArray(alert.samples) ? alert.samples : [];
  const previews = cutSamples(samples);
  if (previews.some((s, i) => s !== samples[i])) {
    cut.push('sample previews');
    const withPreviews = { ...alert, samples: previews };
    const json = encode(withPreviews);
    if (fitsBytes(json, maxBytes)) return done(withPreviews, json);
  }
  let rest = alert;
  let json = asIs;
  if (samples.length > 0) {
    cut.push('samples');
    rest = { ...alert, samples: [] };
    json = undefined;
  }
  json ??= encode(rest);
  if (fitsBytes(json, maxBytes)) return done(rest, json);
  const details = new DetailCut(rest);
  if (details.empty) return done(rest, undefined);
  if (details.previews()) {
    cut.push('detail previews');
    json = encode(details.alert);
    if (fitsBytes(json, maxBytes)) return done(details.alert, json, details.paths);
  }
  // Compared by size, not by the names cut: the values cut whole may all be ones previewed above.
  const size = Buffer.byteLength(json);
  if (details.drop(size, maxBytes) === size) return done(details.alert, undefined, details.paths);
  cut.push('details');
  json = encode(details.alert);
  return done(details.alert, fitsBytes(json, maxBytes) ? json : undefined, details.paths);
}
