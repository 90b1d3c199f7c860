import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { parseIntegrationJson } from '../../shared/config/webhooks-config.js';
import type { Integration, IntegrationRegistry } from './integrations.js';
import { AddressPolicy } from '../../shared/net/ssrf.js';
import { DeliveryWorker, MAX_RETRY_AFTER_MS, type DeliveryQueue } from './worker.js';

const queue: DeliveryQueue = { claim: () => [], nextDueAt: () => undefined, finish: () => [], onWake: () => () => {} };
const registry = { onChange: () => () => {}, active: () => [] } as unknown as IntegrationRegistry;
const integration = { spec: parseIntegrationJson({ name: 'x', type: 'slack', url: 'https://hooks.slack.com/x' }) } as Integration;

function delays(random: () => number, jitter = true) {
  const w = new DeliveryWorker({ queue, registry, policy: new AddressPolicy(), log: pino({ level: 'silent' }), jitter, random });
  const delay = (w as unknown as { retryDelay(i: Integration, tries: number, ra?: number): number }).retryDelay.bind(w);
  return (tries: number, retryAfter?: number) => delay(integration, tries, retryAfter);
}

describe('retry schedule', () => {
  it('follows the default schedule exactly without jitter', () => {
    const d = delays(() => 0.5, false);
    expect([1, 2, 3, 4, 5, 6, 7].map((t) => d(t))).toEqual([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000]);
  });

  it('jitters within ±10 % of each wait', () => {
    const seen = new Set<number>();
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const d = delays(() => r);
      const w = d(2);
      expect(w).toBeGreaterThanOrEqual(270_000);
      expect(w).toBeLessThanOrEqual(330_000);
      seen.add(w);
    }
    // Jitter is real: different draws give different waits, spread over most of the band.
    expect(seen.size).toBe(4);
    expect(Math.max(...seen) - Math.min(...seen)).toBeGreaterThan(40_000);
  });

  it('backs off exponentially on the default schedule, each wait jittered on its own', () => {
    let x = 0.123;
    const d = delays(() => (x = ((x * 9301 + 49297) % 233280) / 233280));
    const waits = [1, 2, 3, 4, 5, 6].map((t) => d(t));
    for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThan(waits[i - 1]!);
  });

  it('waits at least as long as Retry-After asks, up to a day', () => {
    const d = delays(() => 0.5, false);
    expect(d(1, 60_000)).toBe(60_000);
    expect(d(2, 1000)).toBe(300_000);
    expect(d(1, 30 * 24 * 3_600_000)).toBe(MAX_RETRY_AFTER_MS);
  });
});
