import { ALERT_SCHEMA, type AlertPayload, type Severity } from '../../shared/alert/payload.js';

// Alert payloads for the store's and the feed's tests and benchmarks, shaped like
// what the agent's Cilium and Falco modules send.

let n = 0;

export function ciliumPayload(
  o: { fp?: string; ns?: string; src?: string; dst?: string; policy?: string; severity?: Severity; time?: string; count?: number; srcPod?: string } = {},
): AlertPayload {
  n++;
  const ns = o.ns ?? 'shop';
  const src = o.src ?? 'frontend';
  const dst = o.dst ?? 'payments';
  const policy = o.policy ?? `${dst}-ingress`;
  const t = o.time ?? new Date().toISOString();
  const srcPod = o.srcPod ?? `${src}-7d9f8-${n % 7}`;
  return {
    schema: ALERT_SCHEMA,
    source: 'cilium',
    fingerprint: o.fp ?? `cilium-${ns}-${src}-${dst}`,
    severity: o.severity ?? 'medium',
    title: `Ingress not allowed: ${ns}/Deployment/${src} -> ${ns}/Deployment/${dst}:8443/TCP`,
    description: `Dropped by default deny of ${ns}/${policy}. ingress ${ns}/Deployment/${src} (10.0.0.${n % 250}) -> ${ns}/Deployment/${dst}:8443/TCP (10.0.1.13), drop reason POLICY_DENIED.`,
    cluster: 'prod',
    namespace: ns,
    count: o.count ?? 1,
    first_seen: t,
    last_seen: t,
    policies: [{ kind: 'CiliumNetworkPolicy', namespace: ns, name: policy }],
    rule: '',
    labels: {
      direction: 'ingress',
      source_pod: srcPod,
      destination_pod: `${dst}-5c6b-${n % 3}`,
      source_namespace: ns,
      destination_namespace: ns,
      node: 'kind-worker',
    },
    cilium: {
      direction: 'ingress',
      reason: 'POLICY_DENIED',
      drop_reason: 133,
      protocol: 'TCP',
      source: {
        namespace: ns,
        pod: srcPod,
        ip: `10.0.0.${n % 250}`,
        port: 40000 + (n % 20000),
        identity: 1001,
        labels: [`k8s:app=${src}`],
        workload: `Deployment/${src}`,
        names: [],
      },
      destination: {
        namespace: ns,
        pod: `${dst}-5c6b-${n % 3}`,
        ip: '10.0.1.13',
        port: 8443,
        identity: 1002,
        labels: [`k8s:app=${dst}`],
        workload: `Deployment/${dst}`,
        names: [],
      },
      node: 'kind-worker',
    },
    samples: [
      {
        time: t,
        uuid: `flow-${n}`,
        verdict: 'DROPPED',
        IP: { source: `10.0.0.${n % 250}`, destination: '10.0.1.13' },
        l4: { TCP: { source_port: 40000 + (n % 20000), destination_port: 8443 } },
      },
    ],
  };
}

export function falcoPayload(
  o: { fp?: string; rule?: string; ns?: string; pod?: string; severity?: Severity; time?: string; output?: string } = {},
): AlertPayload {
  n++;
  const rule = o.rule ?? 'Terminal shell in container';
  const ns = o.ns ?? 'shop';
  const pod = o.pod ?? 'web-6f7d-x2k';
  const t = o.time ?? new Date().toISOString();
  const output =
    o.output ?? `A shell was spawned in a container with an attached terminal (user=root k8s.ns=${ns} k8s.pod=${pod} shell=bash parent=runc cmdline=bash -i)`;
  return {
    schema: ALERT_SCHEMA,
    source: 'falco',
    fingerprint: o.fp ?? `falco-${rule}-${ns}-${pod}`,
    severity: o.severity ?? 'high',
    title: `${rule} (${ns}/${pod})`,
    description: output,
    cluster: 'prod',
    namespace: ns,
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [],
    rule,
    labels: { priority: 'Notice', source: 'syscall', hostname: 'node-1', pod, container: 'web', process: 'bash', user: 'root' },
    falco: {
      rule,
      priority: 'Notice',
      source: 'syscall',
      hostname: 'node-1',
      output,
      tags: ['container', 'shell'],
      output_fields: { 'k8s.ns.name': ns, 'k8s.pod.name': pod, 'proc.name': 'bash', 'evt.time': 1700000000000000000 },
    },
    samples: [JSON.stringify({ time: t, rule, priority: 'Notice', output, output_fields: { 'k8s.pod.name': pod } })],
  };
}
