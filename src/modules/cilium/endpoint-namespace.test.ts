import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { describe, expect, it } from 'vitest';
import { Flow } from '../../gen/flow/flow.js';
import { decodeFlow } from './flow-decode.js';
import { parseFlowLine } from './flow-json.js';
import { PolicyEngine } from './policy/engine.js';
import { policies } from './policy/testing.js';
import { flowToAlert } from './to-alert.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const capture = readFileSync(resolve(repoRoot, '../shared/fixtures/hubble/basic-sample-400-tcp-flows.jsonl'), 'utf8').split('\n');

// productpage's SYN to reviews through the node's address (line 184 of the real capture):
// Hubble gives productpage's namespace only in its identity labels, not in `namespace`.
// The capture has no drops; this one is made a default-deny drop of unknown direction.
const line184 = JSON.parse(capture[183]!) as { flow: Record<string, unknown> };
const dropped = JSON.stringify({ ...line184, flow: { ...line184.flow, verdict: 'DROPPED', drop_reason: 133, traffic_direction: 'TRAFFIC_DIRECTION_UNKNOWN' } });

const noWorld = policies(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: productpage-no-world
  namespace: bookinfo
  annotations: {app.gitlab.com/alert: "true"}
spec:
  endpointSelector: {matchLabels: {app: productpage}}
  egressDeny:
    - toEntities: [world]
`);

/** The flow as the agent reads it from Relay. */
function fromRelay(f: Flow): Flow {
  const bytes = Flow.encode(f).finish();
  return decodeFlow(new BinaryReader(bytes), bytes, 0, bytes.length);
}

describe('an endpoint whose namespace Hubble gives only in its labels', () => {
  it('the capture has such a sender', () => {
    expect((line184.flow.source as Record<string, unknown>).namespace).toBeUndefined();
  });

  for (const [how, read] of [
    ['from a hubble observe -o json capture', (l: string) => parseFlowLine(l)!],
    ['from Relay', (l: string) => fromRelay({ ...parseFlowLine(l)!, source: { ...parseFlowLine(l)!.source!, namespace: '' } })],
  ] as const) {
    it(`${how}: has the namespace of its labels, in the alert's namespace and labels and for the policies`, () => {
      const flow = read(dropped);
      expect(flow.source!.namespace).toBe('bookinfo');
      const engine = new PolicyEngine(noWorld, { alertNamespaces: ['bookinfo'] });
      const att = engine.attribute(flow)!;
      expect(att).toMatchObject({ direction: 'egress', reason: 'POLICY_DENIED', policies: [{ name: 'productpage-no-world' }] });
      const alert = flowToAlert(flow, att, 'kind', {});
      expect(alert.title).toMatch(/^Egress not allowed: bookinfo\/app=productpage -> /);
      expect(alert.namespace).toBe('bookinfo');
      expect(alert.labels).toMatchObject({ source_namespace: 'bookinfo', destination_namespace: 'bookinfo' });
      expect(alert.cilium).toMatchObject({ source: { namespace: 'bookinfo' } });
    });
  }

  it('a reserved identity (world, host) gets no namespace from nowhere', () => {
    const world = capture.map((l) => (l.startsWith('{') ? parseFlowLine(l) : null)).find((f) => f?.destination?.identity === 2 && !f.destination.pod_name);
    expect(world?.destination?.namespace ?? '').toBe('');
  });
});
