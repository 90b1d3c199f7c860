import { SEVERITY_RANK, type Severity } from './payload.js';

// The one rule for folding a repeat into an open alert, for every place that
// folds (the agent's de-duplication aggregator, Falco's sink, the server's
// store), so an alert reads the same whichever of them folded it.
//
// - count adds up; first_seen is the earliest, last_seen the latest.
// - severity is the highest of the occurrences and never drops while the alert
//   is open: a low-priority repeat must not hide that something critical
//   happened in the same alert.
// - title and description are those of the occurrence that set the severity:
//   the first to arrive at the alert's highest severity (the one that opened
//   the alert, or the first to raise it). They move only when the severity
//   rises: a repeat at the same or a lower severity never rewrites them, nor
//   the server's full-text index, whatever its timestamps. So an alert, and an
//   occurrence folded from several events (the agent's de-duplication window,
//   sent as one occurrence), reads as the event that made it this severe,
//   never as a milder one beside a higher severity. Labels, where the summary
//   has them (the agent's), go with the text. What changed is read beside
//   them: the alert's detail shows the latest occurrence and the one that set
//   the severity.
//
// Arrival order decides, not timestamps: the agent folds events as they come
// and the log keeps that order, so the text is the same whether occurrences
// are folded one at a time or first grouped (a de-duplication window, a Falco
// inbox commit, a Kafka batch) and the groups folded. Timestamps would not
// give that: an older occurrence of the alert's severity folded inside a
// window would compare against the window's earliest time of any severity.
//
// count, first_seen, last_seen and severity do not depend on the order
// occurrences are folded in; title, description and which occurrence set the
// severity depend on it only among occurrences of the highest severity.
//
// Times are compared as given: numbers, or RFC 3339 strings of one fixed form
// (Falco's nine fractional digits, Cilium's three, both UTC with Z), which
// sort as text the way they sort as times.

export interface FoldSummary<T extends string | number = string> {
  count: number;
  first_seen: T;
  last_seen: T;
  severity: Severity;
  title: string;
  description: string;
  /** Moved with title and description when both sides have them (the agent's payloads; the server keeps the first occurrence's). */
  labels?: Record<string, string>;
}

/**
 * foldIn's result: the occurrence set the severity (raised it): keep its
 * sample beside the latest one, so what made the alert this severe stays
 * visible. An occurrence that opens an alert sets it too.
 */
export const FOLD_SETS_SEVERITY = 1;

/**
 * Folds one occurrence (or a summary of several, e.g. an alert the agent
 * already de-duplicated) into an open alert's summary, in place; returns
 * FOLD_SETS_SEVERITY, or 0. In place because the store and the agent fold on
 * every repeat, and both keep the summary anyway: a new summary per repeat
 * would only be copied back and dropped.
 */
export function foldIn<T extends string | number>(into: FoldSummary<T>, occ: Readonly<FoldSummary<T>>): number {
  const rise = SEVERITY_RANK[occ.severity] - SEVERITY_RANK[into.severity];
  const setsSeverity = rise > 0;
  if (setsSeverity) {
    into.title = occ.title;
    into.description = occ.description;
    if (into.labels !== undefined && occ.labels !== undefined) into.labels = occ.labels;
  }
  if (occ.first_seen < into.first_seen) into.first_seen = occ.first_seen;
  if (occ.last_seen > into.last_seen) into.last_seen = occ.last_seen;
  if (setsSeverity) into.severity = occ.severity;
  into.count += occ.count;
  return setsSeverity ? FOLD_SETS_SEVERITY : 0;
}
