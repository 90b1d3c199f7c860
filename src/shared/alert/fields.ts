import { cutText } from '../text/cut.js';
import { cutMarker } from './details.js';
import { type AlertPayload, MAX_SAMPLES } from './payload.js';

// How much of an alert's text fields the server's store keeps. The store cuts
// every alert with these functions (storedTitle, storedDescription,
// cleanLabels); an alert too big for a message (the agent's gRPC message, the
// Kafka log's) is cut with the same ones (cutToStored) before anything else
// (fit.ts), since that loses nothing the store would keep.
// Lengths are UTF-16 units (cutText), never splitting a surrogate pair; a cut
// description ends in the mark of a cut detail value (storedDescription).
//
// The Falco or Cilium details (falco.output, falco.output_fields, ...) are
// stored whole: they have no limit here, and are cut only to fit a message
// (details.ts).

/** The title the store keeps. */
export const MAX_TITLE = 200;
/** The description the store keeps. */
export const MAX_DESCRIPTION = 4000;
/** A label value the store keeps, on one line (newlines separate values in its search text). */
export const MAX_LABEL = 512;

/** The title as the store keeps it. */
export function storedTitle(title: string): string {
  return cutText(title, MAX_TITLE);
}

/**
 * The description as the store keeps it: over MAX_DESCRIPTION, its start and
 * the mark a cut detail value ends in (`…[cut N of M bytes]`, UTF-8 bytes, as
 * details.ts marks them), MAX_DESCRIPTION units in all, so readers see that
 * text is missing, and a description cut once is kept as it is when cut again.
 */
export function storedDescription(description: string): string {
  if (description.length <= MAX_DESCRIPTION) return description;
  const bytes = Buffer.byteLength(description);
  // Room for the longest marker these sizes can make: the cut is at most all of it.
  const room = MAX_DESCRIPTION - 1 - cutMarker(bytes, bytes).length;
  const kept = cutText(description, room);
  return `${kept}…${cutMarker(bytes - Buffer.byteLength(kept), bytes)}`;
}

function plainLabel(v: string): boolean {
  return v.length <= MAX_LABEL && v.indexOf('\n') < 0 && v.indexOf('\r') < 0;
}

/**
 * Labels as the store keeps them: strings cut to MAX_LABEL on one line,
 * numbers and booleans as strings, anything else dropped. Labels that need
 * none of that are returned as they are (the same object).
 */
export function cleanLabels(l: Record<string, unknown>): Record<string, string> {
  for (const k in l) {
    const v = l[k];
    if (typeof v !== 'string' || !plainLabel(v)) return cleaned(l);
  }
  return l as Record<string, string>;
}

function cleaned(l: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in l) {
    const v = l[k];
    if (typeof v === 'string') {
      out[k] = plainLabel(v) ? v : cutText(v, MAX_LABEL).replace(/[\r\n]+/g, ' ');
    } else if (typeof v === 'number' || typeof v === 'boolean') {
      out[k] = String(v);
    }
  }
  return out;
}

/** A field of an alert that cutToStored shortened. */
export type StoredCut = 'title' | 'description' | 'labels' | 'oldest samples';

/**
 * The alert with title, description and labels cut as the store cuts them,
 * and only its newest MAX_SAMPLES samples (all the store keeps of an
 * occurrence), and which of those changed. Fields of the wrong type are left
 * as they are, for the server to refuse with its own reason.
 */
export function cutToStored(alert: AlertPayload): { alert: AlertPayload; cut: StoredCut[] } {
  const out = { ...alert };
  const cut: StoredCut[] = [];
  if (typeof alert.title === 'string' && alert.title.length > MAX_TITLE) {
    out.title = storedTitle(alert.title);
    cut.push('title');
  }
  if (typeof alert.description === 'string' && alert.description.length > MAX_DESCRIPTION) {
    out.description = storedDescription(alert.description);
    cut.push('description');
  }
  if (typeof alert.labels === 'object' && alert.labels !== null) {
    const labels = cleanLabels(alert.labels);
    if (labels !== alert.labels) {
      out.labels = labels;
      cut.push('labels');
    }
  }
  if (Array.isArray(alert.samples) && alert.samples.length > MAX_SAMPLES) {
    out.samples = alert.samples.slice(-MAX_SAMPLES);
    cut.push('oldest samples');
  }
  return { alert: out, cut };
}
