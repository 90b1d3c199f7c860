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
