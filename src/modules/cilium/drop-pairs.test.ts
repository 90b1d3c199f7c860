import { describe, expect, it } from 'vitest';
import type { Flow } from '../../gen/flow/flow.js';
import { flow, pod, type FlowSpec } from './policy/testing.js';
import { DropPairFilter } from './drop-pairs.js';

const base: FlowSpec = { src: pod('shop', 'app=frontend', '10.0.0.1'), dst: pod('shop', 'app=payments', '10.0.0.2'), port: 8443, srcPort: 40001 };

function ofType(type: number, spec: Partial<FlowSpec> = {}): Flow {
  const f = flow({ ...base, ...spec });
  f.event_type = { type, sub_type: 0 };
  return f;
}

describe('DropPairFilter', () => {
  it('counts the two events Cilium reports for one denied packet once, in either order', () => {
    const f = new DropPairFilter();
    expect(f.isPairedRepeat(ofType(5), 1000)).toBe(false);
    expect(f.isPairedRepeat(ofType(1), 1010)).toBe(true);
    expect(f.isPairedRepeat(ofType(1), 2000)).toBe(false);
    expect(f.isPairedRepeat(ofType(5), 2005)).toBe(true);
  });

  it('counts a retransmission of the same packet again', () => {
    const f = new DropPairFilter();
    expect(f.isPairedRepeat(ofType(5), 1000)).toBe(false);
    expect(f.isPairedRepeat(ofType(5), 1200)).toBe(false);
    expect(f.isPairedRepeat(ofType(1), 1210)).toBe(true);
    expect(f.isPairedRepeat(ofType(5), 1400)).toBe(false);
  });

  it('does not pair events more than a second apart', () => {
    const f = new DropPairFilter();
    expect(f.isPairedRepeat(ofType(5), 1000)).toBe(false);
    expect(f.isPairedRepeat(ofType(1), 2001)).toBe(false);
  });

  it('does not pair different packets: other ports, addresses or direction', () => {
    const f = new DropPairFilter();
    expect(f.isPairedRepeat(ofType(5), 1000)).toBe(false);
    expect(f.isPairedRepeat(ofType(1, { srcPort: 40002 }), 1001)).toBe(false);
    expect(f.isPairedRepeat(ofType(1, { port: 443 }), 1002)).toBe(false);
    expect(f.isPairedRepeat(ofType(1, { src: pod('shop', 'app=frontend', '10.0.0.9') }), 1003)).toBe(false);
    expect(f.isPairedRepeat(ofType(1, { dir: 'egress' }), 1004)).toBe(false);
    expect(f.isPairedRepeat(ofType(1), 1005)).toBe(true);
  });

  it('leaves other event types alone (L7 events are never halves of a pair)', () => {
    const f = new DropPairFilter();
    expect(f.isPairedRepeat(ofType(129), 1000)).toBe(false);
    expect(f.isPairedRepeat(ofType(129), 1001)).toBe(false);
    expect(f.isPairedRepeat(ofType(1), 1002)).toBe(false);
  });
});

describe('DropPairFilter against a plain record of every packet', () => {
  it.each([
    ['few packets (many pairs and repeats)', 20, 1000],
    ['many packets (its table grows)', 20_000, 100],
  ])('gives the same answers over random traffic of %s spread over several windows', (_, packets, minPairs) => {
    let seed = 7;
    const r = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
    const filter = new DropPairFilter();
    // The rule as stated: the last event of each packet, paired when the other type came within a second.
    const last = new Map<string, { t: number; type: number }>();
    let pairs = 0;
    for (let i = 0, now = 1000; i < 20_000; i++, now += r() < 0.1 ? 1 : 0) {
      const srcPort = 40000 + Math.floor(r() * packets);
      const port = r() < 0.5 ? 443 : 8443;
      const dir = r() < 0.5 ? 'ingress' : 'egress';
      const type = r() < 0.5 ? 1 : 5;
      const key = `${srcPort}|${port}|${dir}`;
      const seen = last.get(key);
      const expected = seen !== undefined && seen.type !== type && now - seen.t <= 1000;
      if (expected) last.delete(key);
      else last.set(key, { t: now, type });
      if (expected) pairs++;
      expect(filter.isPairedRepeat(ofType(type, { srcPort, port, dir }), now)).toBe(expected);
    }
    expect(pairs).toBeGreaterThan(minPairs);
  });
});
