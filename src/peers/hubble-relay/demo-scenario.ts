import type { Flow } from '../../gen/flow/flow.js';
import { flowFromJson } from '../../modules/cilium/flow-json.js';

// Traffic of a small shop for the demo: the example policies in policies/
// allow most of it and drop a few flows, and one drop has nothing to do with
// policy. Each denied packet comes as Cilium reports it: a policy-verdict
// event and a drop event.

interface Pod {
  ns: string;
  pod: string;
  app: string;
  ip: string;
  identity: number;
  workload?: string;
}

const POD = {
  frontend: { ns: 'shop', pod: 'frontend-6d8f9c7b5-x2kqp', app: 'frontend', ip: '10.0.1.11', identity: 21001, workload: 'frontend' },
  cart: { ns: 'shop', pod: 'cart-5c9d7f6b8-m4wz7', app: 'cart', ip: '10.0.1.12', identity: 21002, workload: 'cart' },
  payments: { ns: 'shop', pod: 'payments-7b6c5d4f9-q9tnb', app: 'payments', ip: '10.0.1.13', identity: 21003, workload: 'payments' },
  postgres: { ns: 'db', pod: 'postgres-0', app: 'postgres', ip: '10.0.2.21', identity: 22001 },
  debug: { ns: 'shop', pod: 'debug-shell-<script>alert(1)</script>', app: 'debug', ip: '10.0.1.99', identity: 21099 },
} satisfies Record<string, Pod>;

const WORLD_METADATA = { ip: '169.254.169.254', identity: 2, labels: ['reserved:world'] };
const WORLD_IRC = { ip: '198.51.100.7', identity: 2, labels: ['reserved:world'] };

function ep(p: Pod) {
  return {
    ID: 100 + (p.identity % 100),
    identity: p.identity,
    namespace: p.ns,
    pod_name: p.pod,
    labels: [
      `k8s:app=${p.app}`,
      `k8s:io.kubernetes.pod.namespace=${p.ns}`,
      `k8s:io.cilium.k8s.policy.serviceaccount=${p.app}`,
      'k8s:io.cilium.k8s.policy.cluster=default',
    ],
    workloads: p.workload ? [{ name: p.workload, kind: 'Deployment' }] : [],
  };
}

let seq = 0;

interface Spec {
  src: Pod | typeof WORLD_METADATA;
  dst: Pod | typeof WORLD_METADATA;
  port: number;
  direction: 'INGRESS' | 'EGRESS';
  verdict: 'FORWARDED' | 'DROPPED';
  dropReason?: 'POLICY_DENIED' | 'POLICY_DENY' | 'CT_MAP_INSERTION_FAILED';
  deniedBy?: { name: string; namespace: string; kind: string };
}

function isPod(x: Pod | typeof WORLD_METADATA): x is Pod {
  return 'pod' in x;
}

function flows(s: Spec, at: Date): Flow[] {
  const srcPort = 32768 + (seq % 28000);
  const base = {
    verdict: s.verdict,
    IP: { source: s.src.ip, destination: s.dst.ip, ipVersion: 'IPv4' },
    l4: { TCP: { source_port: srcPort, destination_port: s.port, flags: { SYN: true } } },
    source: isPod(s.src) ? ep(s.src) : { identity: s.src.identity, labels: s.src.labels },
    destination: isPod(s.dst) ? ep(s.dst) : { identity: s.dst.identity, labels: s.dst.labels },
    Type: 'L3_L4',
    node_name: 'kind-worker',
    traffic_direction: s.direction,
  };
  const out: Flow[] = [];
  const mk = (_type: number, extra: Record<string, unknown>) => {
    seq++;
    const t = new Date(at.getTime() + out.length);
    out.push(flowFromJson({ flow: { ...base, ...extra, time: t.toISOString(), uuid: `demo-${process.pid}-${seq}` } }));
  };
  if (s.verdict === 'FORWARDED') {
    mk(4, { event_type: { type: 4, sub_type: 0 } });
    return out;
  }
  const denied = s.deniedBy ? { [s.direction === 'INGRESS' ? 'ingress_denied_by' : 'egress_denied_by']: [{ ...s.deniedBy, labels: [], revision: 1 }] } : {};
  if (s.dropReason !== 'CT_MAP_INSERTION_FAILED') mk(5, { event_type: { type: 5, sub_type: 0 }, drop_reason_desc: s.dropReason, ...denied });
  mk(1, {
    event_type: { type: 1, sub_type: s.dropReason === 'POLICY_DENY' ? 181 : s.dropReason === 'POLICY_DENIED' ? 133 : 155 },
    drop_reason_desc: s.dropReason,
  });
  return out;
}

/** The steps of the scenario; the demo cycles through them. */
export const DEMO_STEPS: Spec[] = [
  { src: POD.frontend, dst: POD.cart, port: 8080, direction: 'INGRESS', verdict: 'FORWARDED' },
  { src: POD.cart, dst: POD.payments, port: 8443, direction: 'INGRESS', verdict: 'FORWARDED' },
  // payments only accepts cart: the frontend calling it directly is dropped by default deny.
  { src: POD.frontend, dst: POD.payments, port: 8443, direction: 'INGRESS', verdict: 'DROPPED', dropReason: 'POLICY_DENIED' },
  { src: POD.payments, dst: POD.postgres, port: 5432, direction: 'INGRESS', verdict: 'FORWARDED' },
  // only payments may reach the database.
  { src: POD.cart, dst: POD.postgres, port: 5432, direction: 'INGRESS', verdict: 'DROPPED', dropReason: 'POLICY_DENIED' },
  // a clusterwide deny keeps pods away from the cloud metadata service.
  {
    src: POD.payments,
    dst: WORLD_METADATA,
    port: 80,
    direction: 'EGRESS',
    verdict: 'DROPPED',
    dropReason: 'POLICY_DENY',
    deniedBy: { name: 'deny-cloud-metadata', namespace: '', kind: 'CiliumClusterwideNetworkPolicy' },
  },
  // the frontend may only reach the world on 443.
  { src: POD.frontend, dst: WORLD_IRC, port: 6667, direction: 'EGRESS', verdict: 'DROPPED', dropReason: 'POLICY_DENIED' },
  // a pod whose name is hostile markup, dropped by the shop's default deny: the feed must show it as text.
  { src: POD.debug, dst: POD.payments, port: 8443, direction: 'INGRESS', verdict: 'DROPPED', dropReason: 'POLICY_DENIED' },
  // a drop that no policy explains: no alert.
  { src: POD.frontend, dst: POD.cart, port: 8080, direction: 'INGRESS', verdict: 'DROPPED', dropReason: 'CT_MAP_INSERTION_FAILED' },
];

export function scenarioFlows(step: number, at = new Date()): Flow[] {
  return flows(DEMO_STEPS[step % DEMO_STEPS.length]!, at);
}
