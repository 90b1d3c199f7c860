import { cutToStored, type StoredCut } from '../../shared/alert/fields.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { fitSamples, type SampleCut } from '../../shared/alert/fit.js';

// What the publisher does with an alert too big for one gRPC message. First
// its fields are cut as the server's store cuts them (shared/alert/fields.ts),
// then its samples as the server's Kafka log cuts them (shared/alert/fit.ts):
// previews first, which lose nothing the server would have kept, and only
// then no samples. An alert still too big without them is all but
// impossible, since the only fields the store keeps whole are the details
// (such as a Falco output).

/** What was cut from an alert to make it fit, in the order it was cut. */
type FitCut = StoredCut | SampleCut;

/** An alert payload that fits, and what had to go. */
interface Fitted {
  /** Undefined when even the alert cut as far as it goes is too big. */
  payload: Buffer | undefined;
  cut: FitCut[];
  /** The alert's title as the store keeps it, when the payload had to be read (it did not fit as it is). */
  title: string | undefined;
}

/**
 * The payload itself when it is at most `maxBytes`; else the same alert with
 * each step below applied in turn until it fits: its fields as the store keeps
 * them (cutToStored), each sample over MAX_SAMPLE_BYTES (UTF-8) replaced by
 * its preview, no samples. No payload when even that is over `maxBytes` (or it
 * is not an alert's JSON at all).
 */
export function fitPayload(payload: Buffer, maxBytes: number): Fitted {
  if (payload.length <= maxBytes) return { payload, cut: [], title: undefined };
  let parsed: AlertPayload;
  try {
    parsed = JSON.parse(payload.toString('utf8')) as AlertPayload;
  } catch {
    return { payload: undefined, cut: [], title: undefined };
  }
  if (typeof parsed !== 'object' || parsed === null) return { payload: undefined, cut: [], title: undefined };
  const stored = cutToStored(parsed);
  const alert = stored.alert;
  const title = typeof alert.title === 'string' ? alert.title : undefined;
  // Unless cutToStored changed something, the alert as it is was measured above.
  const f = fitSamples(alert, maxBytes, (a) => JSON.stringify(a), stored.cut.length > 0);
  return { payload: f.json === undefined ? undefined : Buffer.from(f.json), cut: [...stored.cut, ...f.cut], title };
}
