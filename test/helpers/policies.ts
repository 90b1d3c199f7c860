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
