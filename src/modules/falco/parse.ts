import { priorityFromName, type FalcoPriority } from './config.js';
import { isVerdictError, VerdictError } from '../../shared/errors.js';

// Falco events arrive as JSON (http_output, file_output, program_output,
// Falcosidekick) or as protobuf (legacy gRPC). Both end up as a FalcoEvent.
// Real events are messy: output_fields values may be null, numbers, strings or
// arrays, the same field is a string in one event and a number in the next,
// old events lack source and tags, and nanosecond integers such as evt.time
// exceed 2^53, so JSON.parse would silently round them.

export interface FalcoEvent {
  /** Timestamp of record, RFC 3339 UTC with nine fractional digits (sorts as text). */
  time: string;
  rule: string;
  priority: FalcoPriority;
  source: string;
  hostname: string;
  output: string;
  tags: string[];
  output_fields: Record<string, unknown>;
  /** Falcosidekick's event id, used to acknowledge retries without counting them twice. */
  uuid?: string;
  /** The event as received, for the alert's samples. */
  raw: Record<string, unknown>;
  /**
   * Fields of a type Falco never sends (it sends output, hostname and source
   * as strings, tags as a list of strings), each with how it was read: for the
   * input to warn about. Undefined when there are none.
   */
  oddFields?: string[];
}

/** A value quoted in a refusal: a field of megabytes would make a log line (and an answer) of megabytes. */
function quoted(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 100 ? `${s.slice(0, 100)}… (${s.length} characters)` : s;
}

/** Parses one JSON event; throws a VerdictError (VERDICT_FALCO_EVENT_INVALID) with a reason a sender can act on. */
export function parseFalcoJson(text: string): FalcoEvent {
  return parseJson(text, false);
}

/** parseFalcoJson for an event accepted before (the inbox replays it): read as leniently as when it was accepted. */
export function parseStoredFalcoJson(text: string): FalcoEvent {
  return parseJson(text, true);
}

function parseJson(text: string, stored: boolean): FalcoEvent {
  let doc: unknown;
  try {
    doc = parseJsonLossless(text);
  } catch (e) {
    if (isVerdictError(e)) throw e;
    const hint = /^\s*[{[]/.test(text) ? '' : '; Falco sends JSON only with json_output: true in falco.yaml';
    throw new VerdictError('VERDICT_FALCO_EVENT_INVALID', `invalid JSON: ${(e as Error).message}${hint}`);
  }
  return toFalcoEvent(doc, stored);
}

/** Checks a decoded JSON value and normalises it into a FalcoEvent. */
export function toFalcoEvent(doc: unknown, stored = false): FalcoEvent {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new VerdictError('VERDICT_FALCO_EVENT_INVALID', 'the body must be one Falco event, a JSON object with rule, priority, time and output');
  }
  const raw = doc as Record<string, unknown>;
  const required = ['rule', 'priority', 'time'] as const;
  const missing = required.filter((k) => raw[k] === undefined || raw[k] === null || raw[k] === '');
  if (missing.length) {
    throw new VerdictError(
      'VERDICT_FALCO_EVENT_INVALID',
      `the event is missing ${missing.map((m) => `"${m}"`).join(', ')} (a Falco event has rule, priority, time, output and output_fields; is this a Falco event with json_output: true?)`,
    );
  }
  const notText = required.filter((k) => typeof raw[k] !== 'string' || (raw[k] as string).trim() === '');
  if (notText.length) {
    throw new VerdictError(
      'VERDICT_FALCO_EVENT_INVALID',
      `${notText.map((m) => `"${m}"`).join(', ')} must be ${notText.length > 1 ? 'non-empty strings' : 'a non-empty string'}, got ${notText.map((m) => quoted(raw[m])).join(', ')}`,
    );
  }
  const priority = priorityFromName(raw.priority as string);
  if (!priority)
    throw new VerdictError(
      'VERDICT_FALCO_EVENT_INVALID',
      `unknown priority ${quoted(raw.priority)}; expected one of Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug`,
    );
  const time = normalizeTime(raw.time as string);
  if (!time)
    throw new VerdictError('VERDICT_FALCO_EVENT_INVALID', `time ${quoted(raw.time)} is not an RFC 3339 timestamp such as 2026-01-02T03:04:05.123456789Z`);
  const of = raw.output_fields;
  // Refused at the door only: an event an older version accepted with such fields is still read (as no fields).
  if (of !== undefined && of !== null && !isRecord(of) && !stored) {
    throw new VerdictError('VERDICT_FALCO_EVENT_INVALID', `"output_fields" must be an object of field names to values, got ${quoted(of)}`);
  }
  const fields = isRecord(of) ? of : {};
  const rule = raw.rule as string;
  const odd: string[] = [];
  const ev: FalcoEvent = {
    time,
    rule,
    priority,
    source: normalizeSource(textField(raw, 'source', odd), rule, fields),
    hostname: textField(raw, 'hostname', odd),
    output: textField(raw, 'output', odd),
    tags: tagsField(raw.tags, odd),
    output_fields: fields,
    uuid: typeof raw.uuid === 'string' && raw.uuid !== '' ? raw.uuid : undefined,
    raw,
  };
  if (odd.length) ev.oddFields = odd;
  return ev;
}

// A sender that is not Falco itself (a script, a proxy re-encoding events)
// may send a number or a comma-separated text where Falco sends a string or a
// list. The event is kept (it is a rule hit, and refusing it would lose it),
// read the way the sender evidently meant it, and the input warns.

/** A text field: a number or boolean as its text, anything else but a string ignored; noted in `odd`. */
function textField(raw: Record<string, unknown>, k: 'source' | 'hostname' | 'output', odd: string[]): string {
  const v = raw[k];
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  if (typeof v === 'number' || typeof v === 'boolean') {
    odd.push(`"${k}" is a ${typeof v} (${quoted(v)}), read as text; Falco sends a string`);
    return String(v);
  }
  odd.push(`"${k}" is ${Array.isArray(v) ? 'a list' : 'an object'} (${quoted(v)}), ignored; Falco sends a string`);
  return '';
}

/** tags: a list of strings; a text is read as a comma-separated list; noted in `odd`. */
function tagsField(v: unknown, odd: string[]): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) {
    const tags: string[] = [];
    for (const t of v) {
      if (typeof t === 'string') tags.push(t);
      else if (typeof t === 'number' || typeof t === 'boolean') tags.push(String(t));
      else if (t !== null && t !== undefined) odd.push(`a tag is not a string (${quoted(t)}), ignored; Falco sends tags as a list of strings`);
    }
    return tags;
  }
  if (typeof v === 'string') {
    odd.push(`"tags" is a text (${quoted(v)}), read as a comma-separated list; Falco sends a list of strings`);
    return v
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
  }
  odd.push(`"tags" is ${typeof v === 'object' ? 'an object' : `a ${typeof v}`} (${quoted(v)}), ignored; Falco sends a list of strings`);
  return [];
}

/**
 * Old events carry no source: Falco before plugins only had syscall and
 * k8s_audit events, and its internal events have rules named "Falco internal: ...".
 * Falcosidekick turns an empty source into "syscalls".
 */
export function normalizeSource(source: string, rule: string, fields: Record<string, unknown>): string {
  const s = source.trim();
  if (s === 'syscalls') return 'syscall';
  if (s !== '') return s;
  if (rule.startsWith('Falco internal')) return 'internal';
  for (const k in fields) if (k.startsWith('ka.')) return 'k8s_audit';
  return 'syscall';
}

const TIME_RE = /^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})$/;

const validDates = new Map<string, boolean>();

/** Digits at [from, to) of t as a number, or -1 if any is not a digit. */
function digitsAt(t: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const d = t.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
  }
  return n;
}

/**
 * The form Falco sends and normalizeTime returns (2026-01-02T03:04:05.123456789Z),
 * checked without a regular expression or a Date; undefined when the general
 * path must decide.
 */
function alreadyNormal(t: string): string | undefined {
  if (t.length !== 30 || t.charCodeAt(29) !== 90 /* Z */ || t.charCodeAt(19) !== 46 /* . */ || t.charCodeAt(10) !== 84 /* T */) return undefined;
  if (t.charCodeAt(4) !== 45 || t.charCodeAt(7) !== 45 || t.charCodeAt(13) !== 58 || t.charCodeAt(16) !== 58) return undefined;
  const hh = digitsAt(t, 11, 13);
  const mm = digitsAt(t, 14, 16);
  const ss = digitsAt(t, 17, 19);
  if (hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 59 || digitsAt(t, 20, 29) < 0) return undefined;
  const date = t.slice(0, 10);
  let ok = validDates.get(date);
  if (ok === undefined) {
    ok = digitsAt(t, 0, 4) >= 0 && digitsAt(t, 5, 7) >= 0 && digitsAt(t, 8, 10) >= 0 && !Number.isNaN(Date.parse(`${date}T00:00:00Z`));
    if (validDates.size > 1000) validDates.clear();
    validDates.set(date, ok);
  }
  return ok ? t : undefined;
}

/** RFC 3339 in, RFC 3339 UTC with exactly nine fractional digits out; undefined if invalid. */
export function normalizeTime(t: string): string | undefined {
  const fast = alreadyNormal(t);
  if (fast !== undefined) return fast;
  const m = TIME_RE.exec(t.trim());
  if (!m) return undefined;
  const [, date, hh, mm, ss, fracRaw = '', zone] = m as unknown as [string, string, string, string, string, string | undefined, string];
  const frac = fracRaw.slice(0, 9).padEnd(9, '0');
  const base = Date.parse(`${date}T${hh}:${mm}:${ss}Z`);
  if (Number.isNaN(base) || Number(hh) > 23 || Number(mm) > 59 || Number(ss) > 60) return undefined;
  if (zone === 'Z' || zone === 'z') return `${date}T${hh}:${mm}:${ss}.${frac}Z`;
  const sign = zone[0] === '-' ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  const offsetMin = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2));
  const utc = new Date(base - sign * offsetMin * 60_000).toISOString();
  return `${utc.slice(0, 19)}.${frac}Z`;
}

/** Nanosecond RFC 3339 from a protobuf Timestamp. */
export function timeFromTimestamp(seconds: number, nanos: number): string {
  const iso = new Date(seconds * 1000).toISOString();
  return `${iso.slice(0, 19)}.${String(Math.max(0, Math.min(999_999_999, nanos))).padStart(9, '0')}Z`;
}

/**
 * How deeply arrays and objects may nest in an event, the event object itself
 * counted. Falco's events nest three levels (the event, output_fields, a list
 * value). The limit is far below what the alert's way to the server can take:
 * JSON.stringify, which writes the alert, recurses once per level and
 * overflows the stack at a few thousand, so an event nested that deep could
 * never be written.
 */
export const MAX_EVENT_DEPTH = 32;

/**
 * JSON.parse that keeps integers beyond 2^53 exact by reading them as strings,
 * and refuses events nested deeper than MAX_EVENT_DEPTH. The scan jumps over
 * strings, so it costs less than a regular expression looking for long digit
 * runs first would (Falco's evt.time has 19 digits).
 */
export function parseJsonLossless(text: string): unknown {
  return JSON.parse(quoteBigIntegers(text));
}

/**
 * Wraps unsafe integer literals outside strings in quotes; throws a
 * VerdictError (VERDICT_FALCO_EVENT_INVALID) when arrays and objects nest
 * deeper than MAX_EVENT_DEPTH.
 */
export function quoteBigIntegers(text: string): string {
  let out = '';
  let last = 0;
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 91 /* [ */ || c === 123 /* { */) {
      if (++depth > MAX_EVENT_DEPTH) throw tooDeep();
      continue;
    }
    if (c === 93 /* ] */ || c === 125 /* } */) {
      depth--;
      continue;
    }
    if (c === 34 /* " */) {
      // Jump over the string with indexOf; most of an event's text is strings.
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return text; // unterminated: let JSON.parse report it
        let k = j - 1;
        while (text.charCodeAt(k) === 92 /* \ */) k--;
        if ((j - 1 - k) % 2 === 0) break;
      }
      i = j;
      continue;
    }
    if ((c >= 48 && c <= 57) || c === 45 /* - */) {
      // Consume the whole number token so a fraction or exponent is never read as an integer.
      let j = i + 1;
      let integer = true;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d >= 48 && d <= 57) j++;
        else if (d === 46 || d === 101 || d === 69 || d === 43 || d === 45) {
          integer = false;
          j++;
        } else break;
      }
      const digits = c === 45 ? j - i - 1 : j - i;
      if (integer && digits >= 16 && !Number.isSafeInteger(Number(text.slice(i, j)))) {
        out += `${text.slice(last, i)}"${text.slice(i, j)}"`;
        last = j;
      }
      i = j - 1;
    }
  }
  return last === 0 ? text : out + text.slice(last);
}

function tooDeep(): VerdictError {
  return new VerdictError(
    'VERDICT_FALCO_EVENT_INVALID',
    `the event nests arrays or objects more than ${MAX_EVENT_DEPTH} levels deep (the event object counted; Falco's events nest 3: the event, output_fields, a list value); it is refused because an alert that deep cannot be stored: send output_fields values as strings, numbers or lists`,
  );
}

/** Text form of an output field value, so "34816" and 34816 mean the same thing. */
export function fieldText(v: unknown): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return v.map(fieldText).join(',');
  return JSON.stringify(v);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
