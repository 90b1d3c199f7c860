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
//   the one that opened the alert, or the first to raise it. A repeat at the
//   same or a lower severity does not rewrite them, nor the server's
//   full-text index; an older occurrence of the alert's severity arriving late
//   does (the text is the earliest of that severity), and an occurrence that
//   raises the severity does, so an alert, and an occurrence folded from
//   several events (the agent's de-duplication window, sent as one occurrence),
//   reads as the event that made it this severe, never as a milder one beside
//   a higher severity. Labels, where the summary has them (the agent's), go
//   with the text. What changed is read beside them: the alert's detail shows
//   the latest occurrence and the one that set the severity.
//
// Ties go to arrival: of two occurrences with the same first_seen, or the
// same severity, the one folded first keeps its text, or having set the
// severity (a repeat at the same severity set nothing).
//
// So count, first_seen, last_seen and severity do not depend on the order
// occurrences are folded in. Title and description do not either while the
// severity does not change (the earliest occurrence's) or when the earliest
// occurrence is also the most severe, as long as first_seen values differ;
// otherwise they are those of the first occurrence folded at the highest
// severity, or of one of that severity older than every occurrence folded
// before it. Which occurrence set the severity depends on order only among
// occurrences of the same severity.
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
  const earlier = occ.first_seen < into.first_seen;
  if (setsSeverity || (rise === 0 && earlier)) {
    into.title = occ.title;
    into.description = occ.description;
    if (into.labels !== undefined && occ.labels !== undefined) into.labels = occ.labels;
  }
  if (earlier) into.first_seen = occ.first_seen;
  if (occ.last_seen > into.last_seen) into.last_seen = occ.last_seen;
  if (setsSeverity) into.severity = occ.severity;
  into.count += occ.count;
  return setsSeverity ? FOLD_SETS_SEVERITY : 0;
}
