import { Flow } from '../../../gen/flow/flow.js';
import type { Policy } from './policy.js';
import { flow, policies, pod, world, type EpSpec, type FlowSpec } from './testing.js';

// Generated data for the policy benchmarks and the tests that decode the same
// flows: a cluster of 25 namespaces of 8 services (3 replicas each), policies
// over it, and flows between random services plus some to the internet, every
// one a drop, as binary protobuf as Hubble Relay sends them. Seeded, so each
// run sees the same data.

const NAMESPACES = 25;
const SERVICES = 8;
const PORTS = [80, 443, 5432, 6379, 8080, 8443, 9090];

/** A seeded pseudo-random number generator (mulberry32): numbers in [0, 1). */
export function rand(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `count` annotated policies: a realistic mix of ingress, egress, deny, clusterwide and Kubernetes ones. */
export function makePolicies(count: number, r: () => number): Policy[] {
  return policies(makePolicyDocs(count, r).join('---\n'), 'bench.yaml');
}

/** The YAML documents of makePolicies(), for benchmarks that hand them to a real agent. */
export function makePolicyDocs(count: number, r: () => number): string[] {
  const docs: string[] = [];
  for (let i = 0; i < count; i++) {
    const ns = `ns-${i % NAMESPACES}`;
    const app = `svc-${Math.floor(i / NAMESPACES) % SERVICES}`;
    const peer = `svc-${Math.floor(r() * SERVICES)}`;
    const port = PORTS[Math.floor(r() * PORTS.length)];
    const meta = (kind: string, name: string, namespace?: string) =>
      `apiVersion: ${kind === 'NetworkPolicy' ? 'networking.k8s.io/v1' : 'cilium.io/v2'}\nkind: ${kind}\nmetadata:\n  name: ${name}\n${namespace ? `  namespace: ${namespace}\n` : ''}  annotations:\n    app.gitlab.com/alert: "true"\n`;
    switch (i % 10) {
      case 9:
        docs.push(
          `${meta('CiliumClusterwideNetworkPolicy', `cw-${i}`)}spec:\n  endpointSelector:\n    matchLabels:\n      tier: t${i % 7}\n  egressDeny:\n    - toCIDRSet:\n        - cidr: 169.254.${i % 256}.0/24\n  enableDefaultDeny:\n    egress: false\n`,
        );
        break;
      case 8:
        docs.push(
          `${meta('NetworkPolicy', `np-${i}`, ns)}spec:\n  podSelector:\n    matchLabels:\n      app: ${app}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels:\n              team: t${i % 5}\n          podSelector:\n            matchLabels:\n              app: ${peer}\n      ports:\n        - port: ${port}\n`,
        );
        break;
      case 7:
        docs.push(
          `${meta('CiliumNetworkPolicy', `eg-${i}`, ns)}spec:\n  endpointSelector:\n    matchLabels:\n      app: ${app}\n  egress:\n    - toEndpoints:\n        - matchExpressions:\n            - key: app\n              operator: In\n              values: [${peer}, svc-${(i + 3) % SERVICES}]\n      toPorts:\n        - ports:\n            - port: "${port}"\n              protocol: TCP\n    - toEntities: [world]\n      toPorts:\n        - ports:\n            - port: "443"\n`,
        );
        break;
      case 6:
        docs.push(
          `${meta('CiliumNetworkPolicy', `deny-${i}`, ns)}spec:\n  endpointSelector:\n    matchLabels:\n      app: ${app}\n  ingressDeny:\n    - fromEndpoints:\n        - matchLabels:\n            app: ${peer}\n      toPorts:\n        - ports:\n            - port: "${port}"\n`,
        );
        break;
      default:
        docs.push(
          `${meta('CiliumNetworkPolicy', `in-${i}`, ns)}spec:\n  endpointSelector:\n    matchLabels:\n      app: ${app}\n  ingress:\n    - fromEndpoints:\n        - matchLabels:\n            app: ${peer}\n      toPorts:\n        - ports:\n            - port: "${port}"\n              protocol: TCP\n              endPort: ${port! + 10}\n`,
        );
    }
  }
  return docs;
}

/** `n` encoded flows of dropped traffic in the cluster makePolicies() is written for. */
export function makeFlows(n: number, r: () => number): Uint8Array[] {
  const pods: EpSpec[] = [];
  for (let ns = 0; ns < NAMESPACES; ns++) {
    for (let s = 0; s < SERVICES; s++) {
      for (let rep = 0; rep < 3; rep++) {
        const p = pod(`ns-${ns}`, {
          app: `svc-${s}`,
          version: 'v1',
          tier: `t${(ns + s) % 7}`,
          'io.cilium.k8s.policy.serviceaccount': `svc-${s}`,
          'io.cilium.k8s.policy.cluster': 'prod',
          'io.cilium.k8s.namespace.labels.team': `t${ns % 5}`,
        });
        pods.push(p);
      }
    }
  }
  const worlds = Array.from({ length: 200 }, (_, i) => world(`203.0.${i >> 8}.${i & 255}`));
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const src = pods[Math.floor(r() * pods.length)]!;
    const toWorld = r() < 0.1;
    const dst = toWorld ? worlds[Math.floor(r() * worlds.length)]! : pods[Math.floor(r() * pods.length)]!;
    const spec: FlowSpec = {
      src,
      dst,
      dir: toWorld || r() < 0.3 ? 'egress' : 'ingress',
      port: PORTS[Math.floor(r() * PORTS.length)]!,
      srcPort: 32768 + Math.floor(r() * 28000),
      reason: r() < 0.2 ? 181 : 133,
    };
    out.push(Flow.encode(flow(spec)).finish());
  }
  return out;
}
