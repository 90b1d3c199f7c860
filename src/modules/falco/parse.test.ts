import { describe, expect, it } from 'vitest';
import { fixtureLines } from '../../../test/falco/helpers.js';
import {
  fieldText,
  MAX_EVENT_DEPTH,
  normalizeTime,
  parseFalcoJson,
  parseJsonLossless,
  parseStoredFalcoJson,
  quoteBigIntegers,
  timeFromTimestamp,
} from './parse.js';
import { VerdictError } from '../../shared/errors.js';

describe('parseFalcoJson', () => {
  it('parses every fixture event', () => {
    const events = fixtureLines().map(parseFalcoJson);
    expect(events).toHaveLength(7);
    expect(events.map((e) => e.priority)).toEqual(['Error', 'Debug', 'Debug', 'Debug', 'Warning', 'Notice', 'Notice']);
    // Old events have no source or tags; Falcosidekick's "syscalls" is read as syscall.
    expect(events.map((e) => e.source)).toEqual(['syscall', 'syscall', 'internal', 'internal', 'syscall', 'syscall', 'syscall']);
    expect(events[0]!.tags).toEqual([]);
    expect(events[1]!.tags).toEqual(['test', 'example']);
    expect(events[5]!.output_fields['proc.pname']).toBeNull();
  });

  it('refuses output_fields that is not an object, naming the field', () => {
    const ev = (of: string) => `{"rule":"r","priority":"Notice","time":"2026-01-01T00:00:00Z","output":"o","output_fields":${of}}`;
    expect(() => parseFalcoJson(ev('"x"'))).toThrow(/"output_fields" must be an object of field names to values, got "x"/);
    expect(() => parseFalcoJson(ev('[1]'))).toThrow(/"output_fields" must be an object/);
    expect(parseFalcoJson(ev('null')).output_fields).toEqual({});
    expect(parseFalcoJson(ev('{"a":1}')).output_fields).toEqual({ a: 1 });
    // An event an older version accepted is still read back, as having no fields.
    expect(parseStoredFalcoJson(ev('"x"')).output_fields).toEqual({});
  });

  it('quotes at most the start of a field it refuses, however long the field', () => {
    const long = 'x'.repeat(1_000_000);
    for (const ev of [
      `{"rule":"r","priority":"Notice","time":"${long}","output":"o"}`,
      `{"rule":"r","priority":"${long}","time":"2026-01-01T00:00:00Z","output":"o"}`,
      `{"rule":["${long}"],"priority":"Notice","time":"2026-01-01T00:00:00Z","output":"o"}`,
      `{"rule":"r","priority":"Notice","time":"2026-01-01T00:00:00Z","output":"o","output_fields":"${long}"}`,
    ]) {
      let message = '';
      try {
        parseFalcoJson(ev);
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/… \(100000[24] characters\)/);
      expect(message.length).toBeLessThan(400);
    }
  });

  it('keeps nanosecond integers beyond 2^53 exact and the time string of record', () => {
    const [first] = fixtureLines().map(parseFalcoJson);
    expect(first!.output_fields['evt.time']).toBe('1507591916746609046');
    expect(first!.time).toBe('2019-05-17T15:31:56.746609046Z');
    expect((first!.raw.output_fields as Record<string, unknown>)['evt.time']).toBe('1507591916746609046');
  });

  it('normalises time to nine fractional digits in UTC', () => {
    expect(normalizeTime('2001-01-01T01:10:00Z')).toBe('2001-01-01T01:10:00.000000000Z');
    expect(normalizeTime('2023-03-03T03:03:03.000000003Z')).toBe('2023-03-03T03:03:03.000000003Z');
    expect(normalizeTime('2016-08-04T18:17:57.8817+02:00')).toBe('2016-08-04T16:17:57.881700000Z');
    expect(normalizeTime('2016-08-04T16:17:57.1234567891234Z')).toBe('2016-08-04T16:17:57.123456789Z');
    // Falco's own form takes a shortcut; it must decide exactly like the general path.
    expect(normalizeTime('2026-02-28T23:59:59.999999999Z')).toBe('2026-02-28T23:59:59.999999999Z');
    expect(normalizeTime('2026-02-30T00:00:00.000000000Z')).toBe(normalizeTime('2026-02-30T00:00:00Z'));
    for (const bad of [
      '2026-02-32T00:00:00.000000000Z',
      '2026-13-01T00:00:00.000000000Z',
      '2026-01-01T24:00:00.000000000Z',
      '2026-01-01T00:60:00.000000000Z',
      '2026-01-01T00:00:60.000000000Z',
      '2026-01-01T00:00:00.00000000xZ',
      '2026-01-0xT00:00:00.000000000Z',
    ]) {
      expect(normalizeTime(bad), bad).toBeUndefined();
    }
    expect(normalizeTime('yesterday')).toBeUndefined();
    expect(normalizeTime('2016-08-04T25:00:00Z')).toBeUndefined();
    expect(timeFromTimestamp(1_700_000_000, 5)).toBe('2023-11-14T22:13:20.000000005Z');
  });

  it('says what is missing or wrong', () => {
    expect(() => parseFalcoJson('{"output":"x"}')).toThrow(/missing "rule", "priority", "time"/);
    expect(() => parseFalcoJson('{"rule":"r","priority":"Loud","time":"2001-01-01T00:00:00Z"}')).toThrow(/unknown priority "Loud"/);
    expect(() => parseFalcoJson('{"rule":"r","priority":"info","time":"nope"}')).toThrow(/not an RFC 3339 timestamp/);
    expect(() => parseFalcoJson('16:31:56.746609046: Error File below')).toThrow(/json_output: true/);
    expect(() => parseFalcoJson('[1]')).toThrow(VerdictError);
    expect(() => parseFalcoJson('{"rule":7,"priority":"Notice","time":"2001-01-01T00:00:00Z"}')).toThrow(/^"rule" must be a non-empty string, got 7$/);
    expect(() => parseFalcoJson('{"rule":"r","priority":" ","time":"2001-01-01T00:00:00Z"}')).toThrow(/"priority" must be a non-empty string/);
  });

  it('accepts priorities in any case, "info", and Falcosidekick\'s uuid', () => {
    const e = parseFalcoJson('{"rule":"r","priority":"info","time":"2001-01-01T00:00:00Z","uuid":"u-1","output_fields":null}');
    expect(e.priority).toBe('Informational');
    expect(e.uuid).toBe('u-1');
    expect(e.output_fields).toEqual({});
    expect(parseFalcoJson('{"rule":"r","priority":"WARNING","time":"2001-01-01T00:00:00Z"}').priority).toBe('Warning');
  });

  it('infers k8s_audit for old audit events without a source', () => {
    expect(parseFalcoJson('{"rule":"r","priority":"Notice","time":"2001-01-01T00:00:00Z","output_fields":{"ka.verb":"create"}}').source).toBe('k8s_audit');
  });
});

describe('quoteBigIntegers', () => {
  it('quotes only unsafe integers outside strings', () => {
    const text =
      '{"a":12345678901234567890,"b":"x 12345678901234567890, \\"y\\"","c":1.2345678901234567890,"d":-98765432109876543210,"e":1e300,"f":[9007199254740993],"g":9007199254740991}';
    const v = JSON.parse(quoteBigIntegers(text)) as Record<string, unknown>;
    expect(v.a).toBe('12345678901234567890');
    expect(v.b).toBe('x 12345678901234567890, "y"');
    expect(typeof v.c).toBe('number');
    expect(v.d).toBe('-98765432109876543210');
    expect(v.e).toBe(1e300);
    expect(v.f).toEqual(['9007199254740993']);
    expect(v.g).toBe(9007199254740991);
    const escapes = '{"a":"ends in a backslash \\\\","b":12345678901234567890,"c":"quote \\" 12345678901234567890 \\\\\\" x"}';
    expect(JSON.parse(quoteBigIntegers(escapes))).toEqual({ a: 'ends in a backslash \\', b: '12345678901234567890', c: 'quote " 12345678901234567890 \\" x' });
  });

  it('refuses arrays and objects nested deeper than MAX_EVENT_DEPTH, brackets in strings aside', () => {
    const nest = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
    expect(MAX_EVENT_DEPTH).toBe(32);
    expect(parseJsonLossless(`{"a":${nest(31)}}`)).toBeTruthy();
    expect(() => parseJsonLossless(`{"a":${nest(32)}}`)).toThrow(/more than 32 levels deep/);
    expect(() => parseJsonLossless(`{"a":${nest(5000)}}`)).toThrow(VerdictError);
    expect(parseJsonLossless(`{"a":"${'['.repeat(5000)}","b":[{}],"c":[[]]}`)).toEqual({ a: '['.repeat(5000), b: [{}], c: [[]] });
    // Not reported as invalid JSON: the reason is the depth.
    expect(() => parseFalcoJson(`{"rule":"r","priority":"info","time":"2001-01-01T00:00:00Z","output_fields":{"x":${nest(40)}}}`)).toThrow(/^the event nests/);
  });

  it('leaves texts without long digit runs to JSON.parse as they are', () => {
    expect(parseJsonLossless('{"a":1}')).toEqual({ a: 1 });
  });
});

describe('fieldText', () => {
  it('reads numbers and strings the same, arrays joined, null empty', () => {
    expect(fieldText(34816)).toBe('34816');
    expect(fieldText('34816')).toBe('34816');
    expect(fieldText(null)).toBe('');
    expect(fieldText(['a', 1])).toBe('a,1');
    expect(fieldText({ k: 1 })).toBe('{"k":1}');
  });
});
