import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../gen/flow/flow.js';
import { endpointName } from './endpoint-name.js';

const ep = (o: Partial<Endpoint>): Endpoint =>
  ({ ID: 0, identity: 0, namespace: '', labels: [], pod_name: '', workloads: [], cluster_name: '', ...o }) as Endpoint;

// The endpoints below are those of the fixture captures (../shared/fixtures/hubble), trimmed to the fields that matter.
describe('endpointName', () => {
  it.each([
    [
      'a workload',
      ep({ namespace: 'shop', pod_name: 'web-6f7d-x2kqp', workloads: [{ kind: 'Deployment', name: 'web' }] }),
      '10.0.0.1',
      [],
      'shop/Deployment/web',
    ],
    [
      'a pod',
      ep({ namespace: 'bookinfo', pod_name: 'ratings-v1-b6994bb9-jgqxb', labels: ['k8s:app=ratings'] }),
      '10.244.0.206',
      [],
      'bookinfo/ratings-v1-b6994bb9-jgqxb',
    ],
    [
      'a pod Cilium saw as world (an L7 proxy flow)',
      ep({ namespace: 'bookinfo', pod_name: 'details-v1-79f774bdb9-m4j4k', labels: ['reserved:world'], identity: 2 }),
      '10.244.1.193',
      [],
      'bookinfo/details-v1-79f774bdb9-m4j4k (reserved:world)',
    ],
    [
      'no pod, the namespace and app in its identity labels (through the node address)',
      ep({ identity: 16370, labels: ['k8s:app=ratings', 'k8s:io.kubernetes.pod.namespace=bookinfo', 'k8s:version=v1'] }),
      '10.244.0.148',
      [],
      'bookinfo/app=ratings',
    ],
    [
      'app.kubernetes.io/name before app',
      ep({ namespace: 'db', labels: ['k8s:app=pg', 'k8s:app.kubernetes.io/name=postgres'] }),
      '10.0.0.2',
      [],
      'db/app.kubernetes.io/name=postgres',
    ],
    ['k8s-app', ep({ labels: ['k8s:k8s-app=kube-dns', 'k8s:io.kubernetes.pod.namespace=kube-system'] }), '10.0.0.3', [], 'kube-system/k8s-app=kube-dns'],
    ['a namespace and nothing else', ep({ identity: 4242, labels: ['k8s:io.kubernetes.pod.namespace=jaeger'] }), '10.0.0.4', [], 'jaeger (ID:4242)'],
    ['the node', ep({ identity: 1, labels: ['reserved:host'] }), '10.244.0.148', [], '10.244.0.148 (reserved:host)'],
    ['a DNS name', ep({ identity: 2, labels: ['reserved:world'] }), '140.82.112.3', ['api.github.com'], 'api.github.com (reserved:world)'],
    ['only an identity', ep({ identity: 4242 }), '10.0.0.5', [], '10.0.0.5 (ID:4242)'],
    ['nothing but the address', undefined, '10.0.0.6', undefined, '10.0.0.6'],
  ])('%s', (_what, e, ip, names, want) => {
    expect(endpointName(e, ip, names)).toBe(want);
  });
});
