import { describe, expect, it } from 'vitest';
import { timeMs } from './ingest.js';
import { iso } from './rows.js';

// The store's own parsing and formatting of times must agree with Date's.

describe('times', () => {
  it('parses what Date.parse parses, the same way, and falls back on the rest', () => {
    const cases = [
      '2024-06-01T10:42:07Z',
      '2024-06-01T10:42:07.1Z',
      '2024-06-01T10:42:07.12Z',
      '2024-06-01T10:42:07.123Z',
      '2024-06-01T10:42:07.123456789Z',
      '2024-02-29T23:59:59.999Z',
      '2023-02-29T00:00:00Z',
      '2024-12-31T00:00:00.000Z',
      '1970-01-01T00:00:00Z',
      '0050-01-01T00:00:00Z',
      '2024-06-01T10:42:07+02:00',
      '2024-06-01T10:42:07.123+02:00',
      '2024-06-01 10:42:07Z',
      '2024-13-01T10:42:07Z',
      '2024-1/-01T10:42:07Z',
      '2024-06-01T24:00:00Z',
      '2024-06-01T10:42:60Z',
      '2024-06-01T10:42:07.Z',
      '2024-06-01T10:42:07.12a4Z',
      '2024-06-01T10:42:07.1234567890Z',
      'yesterday',
      '',
    ];
    for (const c of cases) {
      const t = Date.parse(c);
      expect([c, timeMs(c, -1)]).toEqual([c, Number.isFinite(t) ? t : -1]);
    }
    for (let i = 0; i < 500; i++) {
      const ms = Math.floor(Math.random() * 4e12);
      const s = new Date(ms).toISOString();
      expect(timeMs(s, -1)).toBe(ms);
      expect(timeMs(`${s.slice(0, -1)}456789Z`, -1)).toBe(ms);
    }
  });

  it('formats as toISOString does', () => {
    for (const ms of [0, 1, 999, 1000, 59_999, 60_000, -1, -60_001, 1717238527123, 8.64e15, -8.64e15, 253402300800000]) {
      expect(iso(ms)).toBe(new Date(ms).toISOString());
    }
    let ms = 1717238527123;
    for (let i = 0; i < 1000; i++) {
      ms += Math.floor(Math.random() * 40_000) - 15_000;
      expect(iso(ms)).toBe(new Date(ms).toISOString());
    }
    expect(() => iso(Number.NaN)).toThrow(RangeError);
    expect(iso(1.5)).toBe(new Date(1.5).toISOString());
  });
});
