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
  const re = new RegExp(PART.source, 'y');
  let ms = 0;
  let i = 0;
  while (i < t.length) {
    re.lastIndex = i;
    const m = re.exec(t);
    if (!m) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    i = re.lastIndex;
  }
  return Math.round(ms);
}

export const DURATION_HINT = 'a duration such as 500ms, 10s, 5m or 1h';

/**
 * Parses a flag's duration. A number, or digits alone, are milliseconds
 * (flags took them before units were required). Throws naming the flag.
 */
export function parseDuration(v: string | number, what: string): number {
  if (typeof v === 'number') return v;
  if (/^\d+$/.test(v.trim())) return Number(v.trim());
  const ms = durationMs(v);
  if (ms === undefined) throw new Error(`${what}: "${v}" is not a duration; use e.g. 500ms, 10s, 5m or 1h`);
  return ms;
}
