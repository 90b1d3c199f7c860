import type { Endpoint } from '../../gen/flow/flow.js';

// The one name for a side of a flow, shared by alert titles and descriptions
// and by `verdict replay`, so that both tell a user the same about who talked.

const NAMESPACE_LABEL = 'k8s:io.kubernetes.pod.namespace=';
/** Labels that say which application a pod belongs to, most specific first. */
const APP_LABELS = ['k8s:app.kubernetes.io/name=', 'k8s:app=', 'k8s:k8s-app='];

function labelValue(labels: readonly string[], prefix: string): string | undefined {
  for (const l of labels) if (l.startsWith(prefix)) return l.slice(prefix.length);
  return undefined;
}

/**
 * The endpoint's pod namespace: its namespace field, else its
 * `k8s:io.kubernetes.pod.namespace` label. Hubble leaves the field empty where
 * it knows the sender by identity but not by pod (traffic through the node's
 * address, such as Cilium's L7 proxy's), while the identity's labels still say
 * it. The decoders fill the field with it (flow-decode.ts, flow-json.ts), so
 * alerts, their namespace filters and titles agree on it.
 */
export function podNamespace(namespace: string, labels: readonly string[]): string {
  return namespace || (labelValue(labels, NAMESPACE_LABEL) ?? '');
}

/**
 * What a pod-less endpoint's security identity says it is: `ns/app=ratings`,
 * or `ns (ID:16370)` without an application label; undefined for a reserved
 * identity (host, world, ...) or one without labels, which only the address
 * tells apart. Names the same sender whichever node address its traffic
 * comes from, so alerts group by it too (to-alert.ts).
 */
export function identityName(e: Endpoint | undefined): string | undefined {
  const labels = e?.labels;
  if (!labels || labels.length === 0) return undefined;
  // One pass over the labels (this runs for every flow of a pod-less sender): a reserved one ends it; the
  // namespace label's first value; the first value of the most specific application label (`app=ratings`).
  let namespace = e.namespace || undefined;
  let app: string | undefined;
  let rank = APP_LABELS.length;
  for (const l of labels) {
    if (l.startsWith('reserved:')) return undefined;
    if (namespace === undefined && l.startsWith(NAMESPACE_LABEL)) namespace = l.slice(NAMESPACE_LABEL.length);
    for (let i = 0; i < rank; i++) {
      const prefix = APP_LABELS[i]!;
      if (l.startsWith(prefix)) {
        app = `${prefix.slice(4)}${l.slice(prefix.length)}`;
        rank = i;
        break;
      }
    }
  }
  if (app) return namespace ? `${namespace}/${app}` : app;
  return namespace && e.identity ? `${namespace} (ID:${e.identity})` : undefined;
}

/**
 * Who a side of a flow is, as precisely as the flow says: the workload
 * (`ns/Kind/name`), else the pod (`ns/pod`), else what its security identity's
 * labels say (identityName). Hubble leaves the pod out when the address is
 * not the pod's own (traffic through the node, such as Cilium's L7 proxy,
 * comes from the node's address with the sender's identity), so the address
 * names a pod-less endpoint only when no label does: with its reserved
 * identity (`10.0.0.1 (reserved:host)`) or DNS name where there is one.
 * A pod whose identity is reserved keeps it beside its name, since that is the
 * identity Cilium's policies saw.
 */
export function endpointName(e: Endpoint | undefined, ip: string, names: readonly string[] | undefined): string {
  const reserved = e?.labels.find((l) => l.startsWith('reserved:'));
  const w = e?.workloads?.[0];
  if (w) return `${e!.namespace}/${w.kind}/${w.name}${reserved ? ` (${reserved})` : ''}`;
  if (e?.pod_name) return `${e.namespace ? `${e.namespace}/` : ''}${e.pod_name}${reserved ? ` (${reserved})` : ''}`;
  const address = names?.[0] || ip;
  if (reserved) return address ? `${address} (${reserved})` : reserved;
  const named = identityName(e);
  if (named) return named;
  const namespace = e?.namespace || (e ? labelValue(e.labels, NAMESPACE_LABEL) : undefined);
  if (namespace) return address ? `${namespace} (${address})` : namespace;
  const id = e?.identity ? `ID:${e.identity}` : '';
  if (!address) return id || 'unknown';
  return id ? `${address} (${id})` : address;
}
