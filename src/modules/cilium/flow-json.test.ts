import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Flow, FlowType, L7FlowType, TrafficDirection, Verdict } from '../../gen/flow/flow.js';
import {
  dropReasonName,
  flowEventToJson,
  flowFromJson,
  flowsFromJsonLines,
  flowToJson,
  parseFlowLine,
  timestampFromJson,
  timestampToJson,
} from './flow-json.js';

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const hubbleDir = resolve(repoRoot, '../shared/fixtures/hubble');

describe('flowFromJson', () => {
  it('reads a hubble observe -o json line: enums by name, l4 oneof, timestamp, endpoints', () => {
    const f = flowFromJson({
      flow: {
        time: '2021-11-10T10:40:56.465597700Z',
        verdict: 'DROPPED',
        drop_reason_desc: 'POLICY_DENIED',
        ethernet: { source: 'aa:bb' },
        IP: { source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 'IPv4' },
        l4: { TCP: { source_port: 35128, destination_port: 9080, flags: { SYN: true } } },
        source: {
          ID: 881,
          identity: 3418,
          namespace: 'bookinfo',
          labels: ['k8s:app=productpage'],
          pod_name: 'pp',
          workloads: [{ name: 'pp', kind: 'Deployment' }],
        },
        destination: { identity: 2, labels: ['reserved:world'] },
        Type: 'L3_L4',
        event_type: { type: 5 },
        traffic_direction: 'INGRESS',
        is_reply: false,
        trace_observation_point: 'TO_PROXY',
        ingress_denied_by: [{ name: 'p', namespace: 'ns', labels: ['k8s:x=y'], revision: '12', kind: 'CiliumNetworkPolicy' }],
        destination_names: ['example.com'],
        Summary: 'TCP Flags: SYN',
      },
      node_name: 'kind-control-plane',
      time: '2021-11-10T10:40:56.465597700Z',
    });
    expect(f.time).toEqual({ seconds: 1636540856, nanos: 465597700 });
    expect(f.verdict).toBe(Verdict.DROPPED);
    expect(f.drop_reason_desc).toBe(133);
    expect(f.IP).toEqual({ source: '10.0.0.1', destination: '10.0.0.2', ipVersion: 1, encrypted: false });
    expect(f.l4?.protocol?.$case).toBe('TCP');
    expect(f.l4?.protocol?.value).toMatchObject({ source_port: 35128, destination_port: 9080, flags: { SYN: true, ACK: false } });
    expect(f.source).toMatchObject({ ID: 881, identity: 3418, namespace: 'bookinfo', pod_name: 'pp', workloads: [{ name: 'pp', kind: 'Deployment' }] });
    expect(f.Type).toBe(FlowType.L3_L4);
    expect(f.traffic_direction).toBe(TrafficDirection.INGRESS);
    expect(f.is_reply).toBe(false);
    expect(f.node_name).toBe('kind-control-plane');
    expect(f.event_type).toEqual({ type: 5, sub_type: 0 });
    expect(f.ingress_denied_by).toEqual([{ name: 'p', namespace: 'ns', labels: ['k8s:x=y'], revision: 12, kind: 'CiliumNetworkPolicy' }]);
    expect(f.destination_names).toEqual(['example.com']);
    // and the result encodes as protobuf
    expect(Flow.decode(Flow.encode(f).finish())).toEqual(f);
  });

  it('accepts numbers for enums, lowerCamelCase names, bare flows, L7 and ICMP', () => {
    const f = flowFromJson({
      verdict: 2,
      dropReasonDesc: 181,
      trafficDirection: 2,
      l4: { ICMPv6: { type: 128 } },
      l7: { type: 'REQUEST', latency_ns: '1200', http: { method: 'GET', url: 'http://x/', headers: [{ key: 'a', value: 'b' }] } },
      isReply: true,
    });
    expect(f.verdict).toBe(Verdict.DROPPED);
    expect(f.drop_reason_desc).toBe(181);
    expect(f.traffic_direction).toBe(TrafficDirection.EGRESS);
    expect(f.l4?.protocol).toEqual({ $case: 'ICMPv6', value: { type: 128, code: 0 } });
    expect(f.l7).toEqual({
      type: L7FlowType.REQUEST,
      latency_ns: 1200,
      record: { $case: 'http', value: { code: 0, method: 'GET', url: 'http://x/', protocol: '', headers: [{ key: 'a', value: 'b' }] } },
    });
    expect(f.is_reply).toBe(true);
  });

  it('reads DNS and Kafka records, and both survive flowToJson and the binary codec Relay uses', () => {
    // Field names and numbers as Cilium's flow.proto has them (Layer7 oneof: dns 100, http 101, kafka 102).
    const dns = {
      flow: {
        verdict: 'DROPPED',
        Type: 'L7',
        l7: { type: 'RESPONSE', dns: { query: 'evil.example.', ips: ['1.2.3.4'], ttl: 30, cnames: ['x.'], rcode: 5, qtypes: ['A'], rrtypes: ['A'] } },
      },
    };
    const kafka = {
      flow: {
        verdict: 'DROPPED',
        Type: 'L7',
        l7: { type: 'REQUEST', kafka: { error_code: 29, api_version: 7, api_key: 'produce', correlation_id: 12, topic: 'payments' } },
      },
    };
    const d = flowFromJson(dns);
    expect(d.l7?.record).toEqual({ $case: 'dns', value: { query: 'evil.example.', ips: ['1.2.3.4'], ttl: 30, cnames: ['x.'], rcode: 5, qtypes: ['A'] } });
    const k = flowFromJson(kafka);
    expect(k.l7?.record).toEqual({ $case: 'kafka', value: { error_code: 29, api_version: 7, api_key: 'produce', correlation_id: 12, topic: 'payments' } });
    expect(flowFromJson({ flow: { l7: { kafka: { errorCode: 3, apiKey: 'fetch', correlationId: 1 } } } }).l7?.record).toMatchObject({
      value: { error_code: 3, api_key: 'fetch', correlation_id: 1 },
    });
    for (const f of [d, k]) {
      expect(flowFromJson(flowToJson(f))).toEqual(f);
      expect(Flow.decode(Flow.encode(f).finish())).toEqual(f);
    }
  });

  it('keeps unknown names apart from zero, and reads the deprecated reply flag', () => {
    const f = flowFromJson({ flow: { verdict: 'SOMETHING_NEW', drop_reason_desc: 'NOT_YET_KNOWN', reply: true } });
    expect(f.verdict).toBe(-1);
    expect(f.drop_reason_desc).toBe(0);
    expect(f.is_reply).toBe(true);
    expect(() => flowFromJson('x')).toThrow(TypeError);
    expect(() => flowFromJson({ node_status: {} })).toThrow(/not a flow event/);
  });

  it('timestamps: offsets, fractions, protojson output', () => {
    expect(timestampFromJson('2024-01-01T01:00:00+01:00')).toEqual({ seconds: 1704067200, nanos: 0 });
    expect(timestampFromJson('2024-01-01T00:00:00.5Z')).toEqual({ seconds: 1704067200, nanos: 500_000_000 });
    expect(timestampFromJson('yesterday')).toBeUndefined();
    expect(timestampToJson({ seconds: 1704067200, nanos: 0 })).toBe('2024-01-01T00:00:00Z');
    expect(timestampToJson({ seconds: 1704067200, nanos: 500_000_000 })).toBe('2024-01-01T00:00:00.500Z');
    expect(timestampToJson({ seconds: 1704067200, nanos: 1_000 })).toBe('2024-01-01T00:00:00.000001Z');
    expect(timestampToJson({ seconds: 1704067200, nanos: 465597700 })).toBe('2024-01-01T00:00:00.465597700Z');
  });

  it('drop reason names', () => {
    expect(dropReasonName(133)).toBe('POLICY_DENIED');
    expect(dropReasonName(181)).toBe('POLICY_DENY');
    expect(dropReasonName(999)).toBe('999');
  });
});

describe('lines', () => {
  it('parseFlowLine skips blank lines and non-flow events, throws on non-JSON', () => {
    expect(parseFlowLine('  ')).toBeNull();
    expect(parseFlowLine('{"node_status":{"state_change":"NODE_CONNECTED"},"node_name":"n"}')).toBeNull();
    expect(parseFlowLine('{"flow":{"verdict":"FORWARDED"}}')?.verdict).toBe(Verdict.FORWARDED);
    expect(() => parseFlowLine('{oops')).toThrow();
  });

  it('flowsFromJsonLines names the bad line', () => {
    expect(() => flowsFromJsonLines('{"flow":{}}\n\n{bad')).toThrow(/^line 3: /);
  });

  it('reads every fixture capture, and flowToJson gives back what it read', () => {
    for (const file of readdirSync(hubbleDir)) {
      const text = readFileSync(resolve(hubbleDir, file), 'utf8');
      const flows = flowsFromJsonLines(text);
      expect(flows.length, file).toBe(text.trim().split('\n').length);
      for (const f of flows) {
        const again = flowFromJson(flowEventToJson(f));
        expect(again).toEqual(f);
        expect(flowFromJson(flowToJson(f))).toEqual(f);
      }
      // Fields this subset models come back as Hubble wrote them.
      const first = JSON.parse(text.split('\n')[0]!) as { flow: Record<string, unknown> };
      const out = flowToJson(flows[0]!);
      for (const k of ['time', 'verdict', 'IP', 'l4', 'source', 'destination', 'Type', 'node_name', 'event_type', 'traffic_direction', 'Summary']) {
        if (first.flow[k] !== undefined) expect(out[k], `${file} ${k}`).toEqual(first.flow[k]);
      }
    }
  });
});
