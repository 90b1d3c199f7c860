import type { AlertPayload } from '../../shared/alert/payload.js';
import { fitAlert, type FitCut } from '../../shared/alert/fit.js';

// What the publisher does with an alert too big for one gRPC message: it is
// cut by the ladder the server's Kafka log cuts with too (shared/alert/fit.ts),
// first as the server's store cuts every alert, which loses nothing the server
// would have kept, then with its details (such as a Falco output) previewed,
// then without samples, then with detail values cut whole until it fits.

/** An alert payload that fits, and what had to go. */
interface Fitted {
  /** Undefined when even the alert cut as far as it goes is too big. */
  payload: Buffer | undefined;
  cut: FitCut[];
  /** The names of the detail values cut (`falco.output_fields.proc.cmdline`), in the order they were cut. */
  details: string[];
  /** The alert's title as the store keeps it, when the payload had to be read (it did not fit as it is). */
  title: string | undefined;
}

/**
 * The payload itself when it is at most `maxBytes`; else the same alert with
 * fitAlert's steps applied in turn until it fits: its fields as the store
 * keeps them, sample previews, detail previews, no samples, detail values cut
 * whole. No payload when even that is over
 * `maxBytes` (or it is not an alert's JSON at all).
 */
export function fitPayload(payload: Buffer, maxBytes: number): Fitted {
  if (payload.length <= maxBytes) return { payload, cut: [], details: [], title: undefined };
  let parsed: AlertPayload;
  try {
    parsed = JSON.parse(payload.toString('utf8')) as AlertPayload;
  } catch {
    return { payload: undefined, cut: [], details: [], title: undefined };
  }
  if (typeof parsed !== 'object' || parsed === null) return { payload: undefined, cut: [], details: [], title: undefined };
  // The alert as it is was measured above: its JSON is the payload.
  const f = fitAlert(parsed, maxBytes, (a) => JSON.stringify(a), false);
  const title = typeof f.alert.title === 'string' ? f.alert.title : undefined;
  return { payload: f.json === undefined ? undefined : Buffer.from(f.json), cut: f.cut, details: f.details, title };
}
