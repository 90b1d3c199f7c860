import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { flowToAlert } from '../../src/modules/cilium/to-alert.js';
import { flow, pod } from '../../src/modules/cilium/policy/testing.js';
import { loadFalcoDefaults } from '../../src/modules/falco/defaults.js';
import { eventFromResponse } from '../../src/modules/falco/grpc.js';
import { parseFalcoJson } from '../../src/modules/falco/parse.js';
import { FalcoSink } from '../../src/modules/falco/sink.js';
import { FalcoAlertBuilder } from '../../src/modules/falco/to-alert.js';
import { toGrpcResponse } from '../../src/peers/falco/falco-grpc-peer.js';
import { SCENARIO_LENGTH, scenarioEvent, toFalcoJson } from '../../src/peers/falco/scenario.js';
import type { AlertPayload } from '../../src/shared/alert/payload.js';
import { falcoConfig, fixtureLines, repoRoot, silent, store } from './helpers.js';
import { validate } from './json-schema.js';

const schema = JSON.parse(readFileSync(join(repoRoot, 'alerts/alert.schema.json'), 'utf8')) as Record<string, unknown>;
const builder = new FalcoAlertBuilder(falcoConfig('falco:\n  stdin: true\n  custom_fields: { env: prod }\n'), loadFalcoDefaults());

/** Round-trips through JSON as the spool and the tunnel do. */
const wire = (a: AlertPayload): unknown => JSON.parse(JSON.stringify(a));

describe('alerts/alert.schema.json', () => {
  it('lists exactly the properties of AlertPayload', () => {
    // A compile error here means payload.ts gained or lost a property: update the schema too.
    const keys: Record<keyof AlertPayload, true> = {
      schema: true,
      source: true,
      fingerprint: true,
      severity: true,
      title: true,
      description: true,
      cluster: true,
      namespace: true,
      count: true,
      first_seen: true,
      last_seen: true,
      policies: true,
      rule: true,
      labels: true,
      cilium: true,
      falco: true,
      samples: true,
    };
    expect(Object.keys(schema.properties as object).sort()).toEqual(Object.keys(keys).sort());
  });

  it('accepts every alert built from the fixture and scenario events', () => {
    const events = [...fixtureLines(), ...Array.from({ length: SCENARIO_LENGTH }, (_, i) => toFalcoJson(scenarioEvent(i, new Date(), { uuid: true })))];
    for (const line of events) {
      const a = builder.build(parseFalcoJson(line)).alert!;
      expect(validate(schema, wire(a)), a.rule).toEqual([]);
    }
  });

  it('accepts alerts from the gRPC input and folded alerts from the spool', () => {
    for (let i = 0; i < SCENARIO_LENGTH; i++) {
      const a = builder.build(eventFromResponse(toGrpcResponse(scenarioEvent(i)))!).alert!;
      expect(validate(schema, wire(a))).toEqual([]);
    }
    const s = store();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 0, windowMs: 60_000, log: silent });
    sink.commit(Array.from({ length: 30 }, (_, i) => ({ alert: builder.build(parseFalcoJson(toFalcoJson(scenarioEvent(i)))).alert! })));
    const out = s.flushed();
    expect(out.reduce((n, a) => n + a.count, 0)).toBe(30);
    for (const a of out) expect(validate(schema, a)).toEqual([]);
  });

  it('accepts Cilium alerts too: one payload for both sources', () => {
    const web = pod('shop', 'web');
    const pg = pod('db', 'postgres');
    const flows = [
      flow({ src: web, dst: pg, port: 5432, verdict: 'DROPPED' }),
      flow({ src: web, dst: pg, proto: 'ICMPv4', icmpType: 8, verdict: 'DROPPED' }),
      flow({ src: web, dst: pg, port: 80, verdict: 'DROPPED', http: { method: 'GET', url: 'http://postgres/admin' } }),
    ];
    for (const f of flows) {
      for (const reason of ['POLICY_DENY', 'POLICY_DENIED'] as const) {
        const a = flowToAlert(f, { direction: 'ingress', reason, policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'db', name: 'pg' }] }, 'prod', {
          flow: {},
        });
        expect(validate(schema, wire(a)), `${reason} ${a.title}`).toEqual([]);
      }
    }
    // The cilium details are checked, not only the common part.
    const a = wire(flowToAlert(flows[0]!, { direction: 'egress', reason: 'POLICY_DENY', policies: [] }, '', {})) as { cilium: Record<string, unknown> };
    expect(validate(schema, { ...a, cilium: { ...a.cilium, direction: 'sideways' } })).not.toEqual([]);
  });

  it('rejects payloads that break it', () => {
    const a = wire(builder.build(parseFalcoJson(fixtureLines()[0]!)).alert!) as Record<string, unknown>;
    expect(validate(schema, { ...a, severity: 'urgent' })).toEqual([expect.stringMatching(/^\/severity: "urgent" not in/)]);
    expect(validate(schema, { ...a, count: 0 })).toEqual(['/count: below 1']);
    expect(validate(schema, { ...a, first_seen: '2019-05-17 15:31:56' })[0]).toMatch(/^\/first_seen: .* does not match/);
    expect(validate(schema, { ...a, labels: { pod: 1 } })).toEqual(['/labels/pod: expected string, got 1']);
    const { fingerprint: _, ...noFp } = a;
    expect(validate(schema, noFp)).toEqual([': missing fingerprint']);
  });
});
