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
// Ties go to arrival: of two occurrences with the same last_seen, the one
// folded later is the latest (sources deliver in order, so it happened after,
// within the timestamp's resolution); of two with the same first_seen, or the
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

export interface Folded<T extends string | number = string> {
  /** The summary with the occurrence folded in (a new object; the inputs are not changed). */
  summary: FoldSummary<T>;
  /** The occurrence is now the latest (its last_seen is the alert's). */
  latest: boolean;
  /**
   * The occurrence set the severity (it opened the alert or raised it): keep
   * its sample beside the latest one, so what made the alert this severe stays
   * visible.
   */
  setsSeverity: boolean;
}

/**
 * Folds one occurrence (or a summary of several, e.g. an alert the agent
 * already de-duplicated) into an open alert's summary; `into` undefined opens
 * the alert with it.
 */
export function foldOccurrence<T extends string | number>(into: Readonly<FoldSummary<T>> | undefined, occ: Readonly<FoldSummary<T>>): Folded<T> {
  if (!into) {
    return {
      summary: {
        count: occ.count,
        first_seen: occ.first_seen,
        last_seen: occ.last_seen,
        severity: occ.severity,
        title: occ.title,
        description: occ.description,
      },
      latest: true,
      setsSeverity: true,
    };
  }
  const latest = occ.last_seen >= into.last_seen;
  const earliest = occ.first_seen < into.first_seen;
  const setsSeverity = SEVERITY_RANK[occ.severity] > SEVERITY_RANK[into.severity];
  return {
    summary: {
      count: into.count + occ.count,
      first_seen: earliest ? occ.first_seen : into.first_seen,
      last_seen: latest ? occ.last_seen : into.last_seen,
      severity: setsSeverity ? occ.severity : into.severity,
      title: earliest ? occ.title : into.title,
      description: earliest ? occ.description : into.description,
    },
    latest,
    setsSeverity,
  };
}
