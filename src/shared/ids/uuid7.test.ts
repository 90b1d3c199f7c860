import { afterEach, describe, expect, it, vi } from 'vitest';
import { uuid7 } from './uuid7.js';

describe('uuid7', () => {
  afterEach(() => vi.restoreAllMocks());

  it('makes RFC 9562 version 7 ids carrying the time', () => {
    const before = Date.now();
    const id = uuid7();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const ms = Number.parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
    expect(ms).toBeGreaterThanOrEqual(before);
    expect(ms).toBeLessThanOrEqual(Date.now());
  });

  // The server's event-id index relies on this (see uuid7.ts).
  it('sorts in the order they were made, within a millisecond and when the clock steps back', () => {
    const t = Date.now() + 10_000;
    const clock = vi.spyOn(Date, 'now').mockReturnValue(t);
    const ids = Array.from({ length: 20_000 }, () => uuid7());
    clock.mockReturnValue(t - 5000);
    ids.push(uuid7());
    clock.mockReturnValue(t + 1);
    ids.push(uuid7());
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
