import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Flow } from '../../gen/flow/flow.js';
import { flowsFromJsonLines } from './flow-json.js';
import type { Attribution } from './policy/attribution.js';
import { flowFingerprint, flowFingerprintOf } from './to-alert.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const hubbleDir = resolve(repoRoot, '../shared/fixtures/hubble');

const atts: Attribution[] = [
  { direction: 'ingress', reason: 'POLICY_DENIED', policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'default', name: 'a' }] },
  {
    direction: 'egress',
    reason: 'POLICY_DENY',
    policies: [
      { kind: 'CiliumNetworkPolicy', namespace: 'default', name: 'a' },
      { kind: 'NetworkPolicy', namespace: 'x/y', name: 'b\u001fc' },
    ],
  },
  { direction: 'ingress', reason: 'POLICY_DENIED', policies: [{ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'cw' }], l7: true },
];

describe('flowFingerprint', () => {
  it('gives the digest of the fingerprint text for every fixture flow, first seen and repeated, with attributions alike in content but not in identity', () => {
    const flows = readdirSync(hubbleDir)
      .filter((f) => f.endsWith('.jsonl'))
      .flatMap((f) => flowsFromJsonLines(readFileSync(resolve(hubbleDir, f), 'utf8')));
    expect(flows.length).toBeGreaterThan(800);
    const distinct = new Set<string>();
    for (let round = 0; round < 2; round++) {
      for (const flow of flows) {
        for (const att of [...atts, { ...atts[0]! }]) {
          for (const cluster of ['', 'prod']) {
            // Decoded again, as each flow from Relay is: equal strings, not the same ones.
            const again = Flow.decode(Flow.encode(flow).finish());
            const want = flowFingerprintOf(flow, att, cluster);
            expect(flowFingerprint(flow, att, cluster)).toBe(want);
            expect(flowFingerprint(again, att, cluster)).toBe(want);
            distinct.add(want);
          }
        }
      }
    }
    expect(distinct.size).toBeGreaterThan(20);
  });

  it('keeps apart flows that differ in any part of the fingerprint, and together those that differ in the source port only', () => {
    const base = flowsFromJsonLines(readFileSync(resolve(hubbleDir, 'basic-sample-400-tcp-flows.jsonl'), 'utf8')).find(
      (f) => f.l4?.protocol?.$case === 'TCP' && f.source && f.destination,
    )!;
    base.source!.workloads = [{ kind: 'Deployment', name: 'web' }];
    const variant = (edit: (f: Flow) => void) => {
      const f = Flow.decode(Flow.encode(base).finish());
      edit(f);
      return f;
    };
    const att = atts[0]!;
    const fp = (f: Flow) => {
      const got = flowFingerprint(f, att, 'c');
      expect(got).toBe(flowFingerprintOf(f, att, 'c'));
      return got;
    };
    const same = fp(base);
    expect(
      fp(
        variant((f) => {
          if (f.l4?.protocol?.$case === 'TCP') f.l4.protocol.value.source_port += 1;
        }),
      ),
    ).toBe(same);
    for (const edit of [
      (f: Flow) => (f.source!.namespace += 'x'),
      (f: Flow) => (f.source!.workloads[0]!.name += 'x'),
      (f: Flow) => (f.destination!.namespace = `${f.destination!.namespace}y`),
      (f: Flow) => {
        if (f.l4?.protocol?.$case === 'TCP') f.l4.protocol.value.destination_port += 1;
      },
      (f: Flow) => (f.source!.workloads = []),
    ])
      expect(fp(variant(edit))).not.toBe(same);
  });

  it('tells apart the senders behind one node address by their identity, and groups one sender whichever address it comes from', () => {
    // In this capture 10.244.0.148 (the node's address, through which Cilium's
    // L7 proxy forwards) carries ratings, productpage and the host itself.
    const flows = flowsFromJsonLines(readFileSync(resolve(hubbleDir, 'basic-sample-400-tcp-flows.jsonl'), 'utf8'));
    const viaNode = (app: string) => flows.find((f) => f.IP?.source === '10.244.0.148' && !f.source?.pod_name && f.source?.labels.includes(`k8s:app=${app}`))!;
    const ratings = viaNode('ratings');
    const productpage = Flow.decode(Flow.encode(ratings).finish());
    productpage.source = viaNode('productpage').source;
    const elsewhere = Flow.decode(Flow.encode(ratings).finish());
    elsewhere.IP!.source = '10.244.1.29';
    const att = atts[0]!;
    const fp = (f: Flow) => {
      const got = flowFingerprint(f, att, 'c');
      expect(got).toBe(flowFingerprintOf(f, att, 'c'));
      return got;
    };
    expect(fp(productpage)).not.toBe(fp(ratings));
    expect(fp(elsewhere)).toBe(fp(ratings));
  });
});
