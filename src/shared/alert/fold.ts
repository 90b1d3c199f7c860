import { SEVERITY_RANK, type Severity } from './payload.js';

// The one rule for folding a repeat into an open alert, for every place that
// folds (the agent's de-duplication aggregator, Falco's sink, the server's
// store), so an alert reads the same whichever of them folded it.
//
// - count adds up; first_seen is the earliest, last_seen the latest.
// - severity is the highest of the occurrences and never drops while the alert
//   is open: a low-priority repeat must not hide that something critical
//   happened in the same alert.
// - title and description are those of the earliest occurrence (the one that
//   opened the alert, as in GitLab's alert management): a repeat does not
//   rewrite them, nor the server's full-text index; only an older occurrence
//   arriving late does. What changed is read beside them: the alert's detail
//   shows the latest occurrence and the one that set the severity.
//
// Ties go to arrival: of two occurrences with the same first_seen, or the
// same severity, the one folded first keeps its text, or having set the
// severity (a repeat at the same severity set nothing).
//
// So count, first_seen, last_seen and severity do not depend on the order
// occurrences are folded in; title and description do not either as long as
// first_seen values differ; which occurrence set the severity depends on order
// only among occurrences of the same severity.
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
  const setsSeverity = SEVERITY_RANK[occ.severity] > SEVERITY_RANK[into.severity];
  if (occ.first_seen < into.first_seen) {
    into.first_seen = occ.first_seen;
    into.title = occ.title;
    into.description = occ.description;
  }
  if (occ.last_seen > into.last_seen) into.last_seen = occ.last_seen;
  if (setsSeverity) into.severity = occ.severity;
  into.count += occ.count;
  return setsSeverity ? FOLD_SETS_SEVERITY : 0;
}
