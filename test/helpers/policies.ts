import type { Flow } from '../../src/gen/flow/flow.js';
import { parseFlowLine } from '../../src/modules/cilium/flow-json.js';

/**
 * A labelled policy the agent tests share: payments in shop takes ingress from
 * cart only, so a drop from any other pod is its default deny.
 */
export const PAYMENTS_INGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: payments-ingress
  namespace: shop
  annotations:
    app.gitlab.com/alert: "true"
spec:
  endpointSelector:
    matchLabels:
      app: payments
  ingress:
    - fromEndpoints:
        - matchLabels:
            app: cart
`;

/**
 * A dropped flow into shop/payments from frontend-<n> (each from its own pod
 * and port, so each is its own alert under PAYMENTS_INGRESS), as Relay sends it.
 */
export function paymentsDrop(n: number, o: { at?: Date; uuid?: string; node?: string } = {}): Flow {
  const ep = (app: string, pod: string) => ({
    identity: 1000 + app.length,
    namespace: 'shop',
    pod_name: pod,
    labels: [`k8s:app=${app}`, 'k8s:io.kubernetes.pod.namespace=shop'],
  });
  return parseFlowLine(
    JSON.stringify({
      flow: {
        time: (o.at ?? new Date()).toISOString(),
        uuid: o.uuid ?? `flow-${n}`,
        verdict: 'DROPPED',
        IP: { source: `10.0.0.${n}`, destination: '10.0.1.13', ipVersion: 'IPv4' },
        l4: { TCP: { source_port: 40000 + n, destination_port: 8443, flags: { SYN: true } } },
        source: ep('frontend', `frontend-${n}`),
        destination: ep('payments', 'payments-0'),
        Type: 'L3_L4',
        node_name: o.node ?? 'kind-worker',
        traffic_direction: 'INGRESS',
        event_type: { type: 1, sub_type: 133 },
        drop_reason_desc: 'POLICY_DENIED',
      },
    }),
  )!;
}
