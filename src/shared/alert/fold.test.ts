import { describe, expect, it } from 'vitest';
import { FOLD_SETS_SEVERITY, foldIn, type FoldSummary } from './fold.js';
import type { Severity } from './payload.js';

function occ(t: string, severity: Severity = 'low', description = `d ${t}`, count = 1): FoldSummary {
  return { count, first_seen: t, last_seen: t, severity, title: `t ${description}`, description };
}

function foldAll(list: readonly FoldSummary[]): { summary: FoldSummary; setter: number } {
  // The first occurrence opens the alert: it sets the severity.
  const summary = { ...list[0]! };
  let setter = 0;
  list.forEach((o, i) => {
    if (i === 0) return;
    if (foldIn(summary, o) & FOLD_SETS_SEVERITY) setter = i;
  });
  return { summary, setter };
}

/** foldIn on a copy of `into`, its result as a boolean. */
function fold<T extends string | number>(into: FoldSummary<T>, o: FoldSummary<T>): { summary: FoldSummary<T>; setsSeverity: boolean } {
  const summary = { ...into };
  const flags = foldIn(summary, o);
  return { summary, setsSeverity: (flags & FOLD_SETS_SEVERITY) !== 0 };
}

function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

describe('foldIn', () => {
  it('adds counts, takes the earliest first_seen with its title and description, and the latest last_seen', () => {
    const into = { ...occ('2026-01-01T00:00:02Z'), count: 3, first_seen: '2026-01-01T00:00:01Z' };
    const f = fold(into, { ...occ('2026-01-01T00:00:05Z', 'low', 'newer', 2), first_seen: '2026-01-01T00:00:00Z' });
    expect(f.summary).toEqual({
      count: 5,
      first_seen: '2026-01-01T00:00:00Z',
      last_seen: '2026-01-01T00:00:05Z',
      severity: 'low',
      title: 't newer',
      description: 'newer',
    });
    expect(f.setsSeverity).toBe(false);
  });

  it('takes title and description of an older occurrence that arrives late', () => {
    const f = fold(occ('2026-01-01T00:00:05Z', 'low', 'newer'), occ('2026-01-01T00:00:01Z', 'low', 'older'));
    expect(f.summary.last_seen).toBe('2026-01-01T00:00:05Z');
    expect(f.summary.description).toBe('older');
    expect(f.summary.title).toBe('t older');
    expect(f.summary.first_seen).toBe('2026-01-01T00:00:01Z');
  });

  it('on equal first_seen the text stays the first folded', () => {
    const f = fold(occ('2026-01-01T00:00:01Z', 'low', 'first'), occ('2026-01-01T00:00:01Z', 'low', 'second'));
    expect(f.summary.description).toBe('first');
  });

  it('keeps the highest severity while lower repeats arrive, and says which occurrence set it', () => {
    const { summary, setter } = foldAll([
      occ('2026-01-01T00:00:01Z', 'low'),
      occ('2026-01-01T00:00:02Z', 'critical', 'boom'),
      occ('2026-01-01T00:00:03Z', 'info', 'calm'),
      occ('2026-01-01T00:00:04Z', 'critical', 'boom again'),
    ]);
    expect(summary.severity).toBe('critical');
    expect(setter).toBe(1); // an equal severity later does not take it over
    expect(summary.last_seen).toBe('2026-01-01T00:00:04Z');
    // The text is the one of the occurrence that set the severity, not of a milder one before or after it.
    expect(summary.description).toBe('boom');
    expect(summary.title).toBe('t boom');
  });

  it('on equal severity the occurrence folded first keeps having set it', () => {
    const f = fold(occ('2026-01-01T00:00:02Z', 'high'), occ('2026-01-01T00:00:01Z', 'high'));
    expect(f.setsSeverity).toBe(false);
  });

  it('gives the same count, times, severity, title and description in every order when first_seen values differ', () => {
    const list = [
      occ('2026-01-01T00:00:03Z', 'medium', 'c'),
      occ('2026-01-01T00:00:01Z', 'critical', 'a', 4),
      occ('2026-01-01T00:00:04Z', 'info', 'd'),
      occ('2026-01-01T00:00:02Z', 'high', 'b'),
    ];
    const results = permutations(list).map((p) => foldAll(p).summary);
    for (const r of results)
      expect(r).toEqual({
        count: 7,
        first_seen: '2026-01-01T00:00:01Z',
        last_seen: '2026-01-01T00:00:04Z',
        severity: 'critical',
        title: 't a',
        description: 'a',
      });
    // and the severity setter is always the critical one
    for (const p of permutations(list)) expect(p[foldAll(p).setter]!.description).toBe('a');
  });

  it('folds into the summary it is given, in place', () => {
    const into = occ('2026-01-01T00:00:02Z', 'low', 'first');
    const flags = foldIn(into, occ('2026-01-01T00:00:03Z', 'high', 'second', 2));
    expect(flags).toBe(FOLD_SETS_SEVERITY);
    expect(into).toEqual({ ...occ('2026-01-01T00:00:02Z', 'high', 'second'), count: 3, last_seen: '2026-01-01T00:00:03Z' });
  });

  it('gives an occurrence that raises the severity its text and labels, and never a milder older one', () => {
    const into = { ...occ('2026-01-01T00:00:02Z', 'low', 'notice 1'), labels: { priority: 'Notice' } };
    expect(foldIn(into, { ...occ('2026-01-01T00:00:04Z', 'critical', 'crit 4'), labels: { priority: 'Critical' } })).toBe(FOLD_SETS_SEVERITY);
    foldIn(into, { ...occ('2026-01-01T00:00:01Z', 'low', 'notice 0, late'), labels: { priority: 'Notice' } });
    foldIn(into, { ...occ('2026-01-01T00:00:05Z', 'low', 'notice 5'), labels: { priority: 'Notice' } });
    expect(into).toEqual({
      count: 4,
      first_seen: '2026-01-01T00:00:01Z',
      last_seen: '2026-01-01T00:00:05Z',
      severity: 'critical',
      title: 't crit 4',
      description: 'crit 4',
      labels: { priority: 'Critical' },
    });
    // An older one of the same severity arriving late takes the text, as without a change of severity.
    foldIn(into, { ...occ('2026-01-01T00:00:00Z', 'critical', 'crit 0, late'), labels: { priority: 'Critical' } });
    expect(into).toMatchObject({ description: 'crit 0, late', first_seen: '2026-01-01T00:00:00Z' });
  });

  it('moves labels only when both sides have them (the server keeps the alert’s first labels elsewhere)', () => {
    const into = occ('2026-01-01T00:00:02Z', 'low', 'a');
    foldIn(into, { ...occ('2026-01-01T00:00:03Z', 'high', 'b'), labels: { x: '1' } });
    expect(into.labels).toBeUndefined();
  });

  it('compares numeric times too', () => {
    const f = fold<number>(
      { count: 1, first_seen: 10, last_seen: 10, severity: 'low', title: 'x', description: 'x' },
      { count: 1, first_seen: 9, last_seen: 9, severity: 'low', title: 'y', description: 'y' },
    );
    expect(f.summary).toMatchObject({ first_seen: 9, last_seen: 10, description: 'y' });
  });
});
