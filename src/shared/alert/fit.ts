import { DetailCut } from './details.js';
import { cutToStored, type StoredCut } from './fields.js';
import type { AlertPayload } from './payload.js';
import { cutSamples, fitsBytes } from './samples.js';

// How an alert too big for a message is cut to fit, where both the agent's
// gRPC message and the server's Kafka log need it. Each step loses more than
// the one before, and it stops at the first that fits: the alert as the store
// keeps every alert (its title, description and labels cut, the newest
// MAX_SAMPLES samples), which loses nothing the server would have kept; each
// sample over MAX_SAMPLE_BYTES as its preview, as the store keeps it too; each
// detail string over MAX_SAMPLE_BYTES as its preview (details.ts), which keeps
// the start of every value; no samples; then detail values cut whole, biggest
// first. An alert is never refused for its details; only one whose fields that
// no step cuts (rule, namespace, policies, labels' names) are too big is.
// Each caller gives its own limit and encoding (the message it writes the
// alert into).

/** A step of fitAlert that cut something, in the order they are taken. */
export type FitCut = StoredCut | 'sample previews' | 'detail previews' | 'samples' | 'details';

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
 * Whether a fit's cuts lost something the server would have kept: samples, or details cut whole. Sample and detail
 * previews, and the fields the store cuts anyway, lose nothing it keeps; they are the rule for big values, not news.
 */
export function losesStored(cut: readonly FitCut[], details: readonly string[]): boolean {
  return cut.includes('samples') || details.length > 0;
}

/**
 * `alert` encoded by `encode` when that is at most `maxBytes` (UTF-8); else
 * the alert cut by each step in turn until it fits: its fields as the store
 * keeps them (cutToStored), each sample over MAX_SAMPLE_BYTES as its preview,
 * each detail string over MAX_SAMPLE_BYTES as its preview, no samples, then
 * detail values cut whole (DetailCut.drop). A step that would change nothing
 * is skipped, and so is the alert as it is when `tryAsIs` is false (the caller
 * knows it is too big). `encode` must hold the alert's JSON once, as an
 * envelope around it does.
 */
export function fitAlert(alert: AlertPayload, maxBytes: number, encode: (a: AlertPayload) => string, tryAsIs = true): AlertFit {
  const cut: FitCut[] = [];
  const done = (a: AlertPayload, json: string | undefined, details: string[] = []): AlertFit => ({ json, alert: a, cut, details });
  let json: string | undefined;
  if (tryAsIs) {
    json = encode(alert);
    if (fitsBytes(json, maxBytes)) return done(alert, json);
  }
  const stored = cutToStored(alert);
  if (stored.cut.length > 0) {
    cut.push(...stored.cut);
    alert = stored.alert;
    json = encode(alert);
    if (fitsBytes(json, maxBytes)) return done(alert, json);
  }
  // Fields of the wrong type are the server's to refuse: samples that are not an array are left as they are.
  const samples: readonly unknown[] = Array.isArray(alert.samples) ? alert.samples : [];
  const previews = cutSamples(samples);
  if (previews.some((s, i) => s !== samples[i])) {
    cut.push('sample previews');
    alert = { ...alert, samples: previews };
    json = encode(alert);
    if (fitsBytes(json, maxBytes)) return done(alert, json);
  }
  const details = new DetailCut(alert);
  if (details.previews()) {
    cut.push('detail previews');
    json = encode(details.alert);
    if (fitsBytes(json, maxBytes)) return done(details.alert, json, details.paths);
  }
  if (samples.length > 0) {
    cut.push('samples');
    details.alert.samples = [];
    json = encode(details.alert);
    if (fitsBytes(json, maxBytes)) return done(details.alert, json, details.paths);
  }
  if (json === undefined) {
    // No step changed the alert, and the caller did not have it encoded as it is.
    json = encode(details.alert);
    if (fitsBytes(json, maxBytes)) return done(details.alert, json);
  }
  if (details.empty) return done(details.alert, undefined, details.paths);
  // Compared by size, not by the names cut: the values cut whole may all be ones previewed above.
  const size = Buffer.byteLength(json);
  if (details.drop(size, maxBytes) === size) return done(details.alert, undefined, details.paths);
  cut.push('details');
  json = encode(details.alert);
  return done(details.alert, fitsBytes(json, maxBytes) ? json : undefined, details.paths);
}
