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
  it('adds counts, takes the earliest first_seen and the latest last_seen, and keeps the text', () => {
    const into = { ...occ('2026-01-01T00:00:02Z'), count: 3, first_seen: '2026-01-01T00:00:01Z' };
    const f = fold(into, { ...occ('2026-01-01T00:00:05Z', 'low', 'newer', 2), first_seen: '2026-01-01T00:00:00Z' });
    expect(f.summary).toEqual({
      count: 5,
      first_seen: '2026-01-01T00:00:00Z',
      last_seen: '2026-01-01T00:00:05Z',
      severity: 'low',
      title: 't d 2026-01-01T00:00:02Z',
      description: 'd 2026-01-01T00:00:02Z',
    });
    expect(f.setsSeverity).toBe(false);
  });

  it('keeps title and description when an older occurrence of the same severity arrives late', () => {
    const f = fold(occ('2026-01-01T00:00:05Z', 'low', 'newer'), occ('2026-01-01T00:00:01Z', 'low', 'older'));
    expect(f.summary.last_seen).toBe('2026-01-01T00:00:05Z');
    expect(f.summary.description).toBe('newer');
    expect(f.summary.title).toBe('t newer');
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
    // An older one of the same severity arriving late does not take the text: only a rise moves it.
    foldIn(into, { ...occ('2026-01-01T00:00:00Z', 'critical', 'crit 0, late'), labels: { priority: 'Critical', late: 'yes' } });
    expect(into).toMatchObject({ description: 'crit 4', labels: { priority: 'Critical' }, first_seen: '2026-01-01T00:00:00Z' });
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
    expect(f.summary).toMatchObject({ first_seen: 9, last_seen: 10, description: 'x' });
  });

  it('gives the same summary whether occurrences are folded one at a time or first grouped into windows', () => {
    const o = (t: number, severity: Severity, d: string): FoldSummary<number> => ({
      count: 1,
      first_seen: t,
      last_seen: t,
      severity,
      title: `t ${d}`,
      description: d,
      labels: { d },
    });
    // The reviewer's cases: each window folded before it joins the alert.
    const grouped = (windows: FoldSummary<number>[][]): FoldSummary<number> => {
      const folded = windows.map((w) => {
        const s = { ...w[0]! };
        for (const x of w.slice(1)) foldIn(s, x);
        return s;
      });
      const into = { ...folded[0]! };
      for (const s of folded.slice(1)) foldIn(into, s);
      return into;
    };
    const low1 = o(1, 'low', 'low@1');
    const crit4 = o(4, 'critical', 'crit@4');
    const crit2 = o(2, 'critical', 'crit@2');
    expect(grouped([[low1], [crit4], [crit2]]).description).toBe('crit@4');
    expect(grouped([[low1], [crit4, crit2]]).description).toBe('crit@4');
    const held = o(3, 'critical', 'crit@3');
    expect(grouped([[held], [o(1, 'low', 'low@1'), o(10, 'critical', 'crit@10')]]).description).toBe('crit@3');

    // Every arrival order of these, cut into consecutive windows every possible way.
    const list = [o(3, 'medium', 'm3'), o(1, 'critical', 'c1'), o(5, 'critical', 'c5'), o(2, 'low', 'l2'), o(4, 'medium', 'm4')];
    for (const arrival of permutations(list)) {
      const oneAtATime = grouped(arrival.map((x) => [x]));
      for (let cuts = 0; cuts < 1 << (arrival.length - 1); cuts++) {
        const windows: FoldSummary<number>[][] = [[arrival[0]!]];
        for (let i = 1; i < arrival.length; i++) {
          if (cuts & (1 << (i - 1))) windows.push([]);
          windows[windows.length - 1]!.push(arrival[i]!);
        }
        expect(grouped(windows)).toEqual(oneAtATime);
      }
      // The text is the first critical to arrive, with its labels.
      const first = arrival.find((x) => x.severity === 'critical')!;
      expect(oneAtATime).toMatchObject({ description: first.description, labels: first.labels, first_seen: 1, last_seen: 5, count: 5 });
    }
  });
});
