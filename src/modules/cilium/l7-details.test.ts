import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { validate } from '../../../test/falco/json-schema.js';
import { RENDERERS } from '../../server/webhooks/formats/index.js';
import type { DeliveryItem } from '../../server/webhooks/formats/alert.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { flowFromJson } from './flow-json.js';
import { PolicyEngine } from './policy/engine.js';
import { flowJson, pod, policies } from './policy/testing.js';
import { flowToAlert } from './to-alert.js';

// An L7 denial must say what was refused, from the flow to every place the
// alert is read: payload (and its JSON schema), title/description, webhooks.

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const schema = JSON.parse(readFileSync(resolve(repoRoot, 'alerts/alert.schema.json'), 'utf8')) as Record<string, unknown>;

const api = pod('shop', 'api');
const kubeDns = pod('kube-system', { 'k8s-app': 'kube-dns' });
const kafkaBroker = pod('shop', 'kafka');
const engine = new PolicyEngine(
  policies(`apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: api-egress
  namespace: shop
  annotations: {app.gitlab.com/alert: "true"}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
    - toEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: kube-system, k8s-app: kube-dns}}]
      toPorts: [{ports: [{port: "53", protocol: ANY}], rules: {dns: [{matchPattern: "*.shop.example"}]}}]
    - toEndpoints: [{matchLabels: {app: kafka}}]
      toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [{role: produce, topic: orders}]}}]
`),
);

/** A DNS query the proxy refused, as a recent Hubble prints it. */
function dnsDenial(query: string) {
  const j = flowJson({ src: api, dst: kubeDns, dir: 'egress', proto: 'UDP', port: 53, dns: query, reason: 133 }) as { flow: Record<string, unknown> };
  Object.assign(j.flow, { Type: 'L7', event_type: { type: 129 }, l7: { type: 'REQUEST', dns: { query, qtypes: ['A'] } } });
  return { flow: flowFromJson(j), json: j.flow };
}

function alertFor(f: ReturnType<typeof dnsDenial>): AlertPayload {
  const a = engine.attribute(f.flow);
  expect(a).not.toBeNull();
  return JSON.parse(JSON.stringify(flowToAlert(f.flow, a!, 'prod', f.json))) as AlertPayload;
}

describe('L7 details of a denial', () => {
  it('a DNS denial names the query in the payload, the description and the fingerprint', () => {
    const a = alertFor(dnsDenial('exfil.evil.example.'));
    expect(a.cilium!.dns).toEqual({ query: 'exfil.evil.example.', qtypes: ['A'] });
    expect(a.description).toMatch(/^Refused by the L7 rules of shop\/api-egress\. egress .* DNS query A exfil\.evil\.example\., drop reason POLICY_DENIED\.$/);
    expect(validate(schema, a)).toEqual([]);
    // Another name is another thing happening; the same name in other case is not.
    expect(alertFor(dnsDenial('other.evil.example.')).fingerprint).not.toBe(a.fingerprint);
    expect(alertFor(dnsDenial('EXFIL.evil.example')).fingerprint).toBe(a.fingerprint);
  });

  it('the DNS rcode is kept when Hubble reports one', () => {
    const f = dnsDenial('exfil.evil.example.');
    const j = { ...f.json, l7: { type: 'RESPONSE', dns: { query: 'exfil.evil.example.', rcode: 5 } } };
    const flow = flowFromJson({ flow: j });
    const a = flowToAlert(
      flow,
      { direction: 'egress', reason: 'POLICY_DENIED', policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'api-egress' }] },
      'prod',
      j,
    );
    expect(a.cilium!.dns).toEqual({ query: 'exfil.evil.example.', rcode: 5 });
    expect(a.description).toContain('DNS query exfil.evil.example. (REFUSED)');
    expect(validate(schema, JSON.parse(JSON.stringify(a)))).toEqual([]);
  });

  it('a Kafka request is carried as Hubble reports it', () => {
    const j = flowJson({ src: api, dst: kafkaBroker, dir: 'egress', port: 9092, verdict: 'DROPPED', reason: 133 }) as { flow: Record<string, unknown> };
    Object.assign(j.flow, {
      Type: 'L7',
      event_type: { type: 129 },
      l7: { type: 'REQUEST', kafka: { api_key: 'produce', api_version: 7, topic: 'payments', correlation_id: 4 } },
    });
    const flow = flowFromJson(j);
    const a = flowToAlert(flow, { direction: 'egress', reason: 'POLICY_DENIED', policies: [] }, 'prod', j.flow);
    expect(a.cilium!.kafka).toEqual({ api_key: 'produce', api_version: 7, topic: 'payments', correlation_id: 4, error_code: 0 });
    expect(a.description).toContain('Kafka produce topic payments');
    expect(validate(schema, JSON.parse(JSON.stringify(a)))).toEqual([]);
    // The Kafka rule's client ID is not in the record: such a request is never blamed on the rule.
    expect(engine.attribute(flow)).toBeNull();
  });

  it('every webhook format carries the DNS query', () => {
    const a = alertFor(dnsDenial('exfil.evil.example.'));
    const item: DeliveryItem = {
      event: 'triggered',
      alert: {
        id: 7,
        status: 'triggered',
        source: a.source,
        severity: a.severity,
        title: a.title,
        description: a.description,
        agent: 'edge',
        cluster: a.cluster,
        namespace: a.namespace,
        policies: a.policies,
        rule: a.rule,
        labels: a.labels,
        count: a.count,
        first_seen: a.first_seen,
        last_seen: a.last_seen,
        resolved_at: null,
        fingerprint: a.fingerprint,
        details: { cilium: a.cilium },
        url: null,
      },
    };
    for (const [name, render] of Object.entries(RENDERERS)) {
      expect(render([item], { integration: name, externalUrl: '', createdAt: a.first_seen, grouped: false }), name).toContain('exfil.evil.example.');
    }
  });
});
