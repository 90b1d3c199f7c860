import { describe, expect, it } from 'vitest';
import { uuid7, uuid7Time } from './uuid7.js';

describe('uuid7', () => {
  it('makes RFC 9562 version 7 ids carrying the time', () => {
    const t = Date.UTC(2026, 10, 21, 12, 0, 0, 123);
    const id = uuid7(t + 1000);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(uuid7Time(id)).toBe(t + 1000);
  });

  it('sorts in the order they were made, within a millisecond and when the clock steps back', () => {
    const t = Date.now() + 10_000;
    const ids = [...Array.from({ length: 20_000 }, () => uuid7(t)), uuid7(t - 5000), uuid7(t + 1)];
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('tells other strings from its ids', () => {
    expect(uuid7Time('0b3c9a7e-3f1d-4c5e-9a8b-1234567890ab')).toBeUndefined();
    expect(uuid7Time('not an id')).toBeUndefined();
  });
});
