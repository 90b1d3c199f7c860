// The one duration syntax of Verdict, for config files and flags alike: Go's
// time.ParseDuration form ("500ms", "10s", "1h30m"), which the GitLab agent's
// flags use, and which also covers the protobuf JSON form ("3600s", "0.5s") that
// real config.yaml files carry for the agent's google.protobuf.Duration keys.

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
// "ms" before "m", and "ns"/"us" before "s", so the longest unit wins.
const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Milliseconds (rounded), or undefined when `text` is not a duration. */
export function durationMs(text: string): number | undefined {
  const t = text.trim();
  if (t === '0') return 0; // as Go: a bare zero needs no unit
  if (t === '') return undefined;
  const sum = sumParts(t, PART, UNIT_MS);
  return sum === undefined ? undefined : Math.round(sum.ms);
}

/** `text` read as number-unit parts of `part` (a sticky regex), their sum in milliseconds and the units used. */
function sumParts(text: string, part: RegExp, units: Record<string, number>): { ms: number; units: Set<string> } | undefined {
  const re = new RegExp(part.source, 'y');
  let ms = 0;
  const used = new Set<string>();
  for (let i = 0; i < text.length; i = re.lastIndex) {
    re.lastIndex = i;
    const m = re.exec(text);
    if (!m) return undefined;
    used.add(m[2]!);
    ms += Number(m[1]) * units[m[2]!]!;
  }
  return { ms, units: used };
}

export const DURATION_HINT = 'a duration such as 500ms, 10s, 5m or 1h';

// Days and weeks as other tools (and the alert feed's filters) write them; Go has neither.
const LONG_UNIT_MS: Record<string, number> = { ...UNIT_MS, d: 24 * 3_600_000, w: 7 * 24 * 3_600_000 };
const LONG_PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)/y;

/** Milliseconds in Go's units, whose largest is the hour: 720h, 36h30m, 1h500ms. */
function goForm(ms: number): string {
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, n] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (rest >= n) parts.push(`${Math.floor(rest / n)}${unit}`);
    rest %= n;
  }
  if (rest > 0 || parts.length === 0) parts.push(`${rest}ms`);
  return parts.join('');
}

/**
 * Why a duration written with days or weeks (30d, 2w, 1d12h) is refused, with
 * the same span in hours; undefined when `text` does not use them.
 */
export function daysOrWeeksHint(text: string): string | undefined {
  const t = text.trim();
  const sum = sumParts(t, LONG_PART, LONG_UNIT_MS);
  const units = [...(sum?.units ?? [])].filter((u) => u === 'd' || u === 'w');
  if (!sum || units.length === 0) return undefined;
  const named = units.map((u) => (u === 'd' ? 'days (d)' : 'weeks (w)')).join(' and ');
  return `${named} are not a unit here: write ${goForm(sum.ms)} for ${t}`;
}

/**
 * Parses a flag's duration. A number, or digits alone, are milliseconds
 * (flags took them before units were required). Throws naming the flag.
 */
export function parseDuration(v: string | number, what: string): number {
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const ms = durationMs(v);
  if (ms === undefined) {
    const long = daysOrWeeksHint(v);
    throw new Error(`${what}: "${v}" is not a duration; ${long ?? 'use e.g. 500ms, 10s, 5m or 1h'}`);
  }
  return ms;
}
