// The fields the API server keeps in network policies (Cilium's v2 CRDs and
// networking.k8s.io/v1 NetworkPolicy). Their schemas are structural, so the
// API server silently drops any other field: an upper-case `HTTP:` under
// `rules`, a `toPort` for `toPorts`. The policy then applies without it, which
// usually means an L7 rule or a port restriction that does nothing. Such
// fields are reported, with where they are and the name that was probably
// meant; they never stop a policy from loading.

import { nearMiss } from '../../../shared/near-miss.js';

/** null: a value whose inside is not checked (free maps, scalars, label lists). */
type Node = Shape | ListOf | null;
interface Shape {
  readonly [field: string]: Node;
}
class ListOf {
  constructor(readonly items: Shape) {}
}

const listOf = (s: Shape): ListOf => new ListOf(s);

const selector: Shape = { matchLabels: null, matchExpressions: listOf({ key: null, operator: null, values: null }) };
const portProtocol: Shape = { port: null, endPort: null, protocol: null };
const http: Shape = { path: null, method: null, host: null, headers: null, headerMatches: listOf({ name: null, value: null, secret: null, mismatch: null }) };
const l7Rules: Shape = {
  http: listOf(http),
  kafka: listOf({ role: null, apiKey: null, apiVersion: null, clientID: null, topic: null }),
  dns: listOf({ matchName: null, matchPattern: null }),
  l7proto: null,
  l7: null,
};
const portRule: Shape = { ports: listOf(portProtocol), rules: l7Rules, terminatingTLS: null, originatingTLS: null, serverNames: null, listener: null };
const portDenyRule: Shape = { ports: listOf(portProtocol) };
const cidrRule: Shape = { cidr: null, cidrGroupRef: null, cidrGroupSelector: null, except: null };
const icmpRule: Shape = { fields: listOf({ type: null, family: null }) };
const service: Shape = { k8sService: { serviceName: null, namespace: null }, k8sServiceSelector: { selector, namespace: null } };
const fqdn: Shape = { matchName: null, matchPattern: null };

const ingressCommon: Shape = {
  fromEndpoints: listOf(selector),
  fromRequires: listOf(selector),
  fromCIDR: null,
  fromCIDRSet: listOf(cidrRule),
  fromEntities: null,
  fromGroups: null,
  fromNodes: listOf(selector),
  icmps: listOf(icmpRule),
};
const egressCommon: Shape = {
  toEndpoints: listOf(selector),
  toRequires: listOf(selector),
  toCIDR: null,
  toCIDRSet: listOf(cidrRule),
  toEntities: null,
  toGroups: null,
  toNodes: listOf(selector),
  toServices: listOf(service),
  icmps: listOf(icmpRule),
};
const ciliumRule: Shape = {
  endpointSelector: selector,
  nodeSelector: selector,
  ingress: listOf({ ...ingressCommon, toPorts: listOf(portRule), authentication: null }),
  ingressDeny: listOf({ ...ingressCommon, toPorts: listOf(portDenyRule) }),
  egress: listOf({ ...egressCommon, toFQDNs: listOf(fqdn), toPorts: listOf(portRule), authentication: null }),
  egressDeny: listOf({ ...egressCommon, toPorts: listOf(portDenyRule) }),
  enableDefaultDeny: { ingress: null, egress: null },
  labels: null,
  description: null,
  log: null,
};

// Top-level `description` is how Cilium's older examples documented a policy; it does nothing either way.
export const CILIUM_POLICY: Shape = {
  apiVersion: null,
  kind: null,
  metadata: null,
  spec: ciliumRule,
  specs: listOf(ciliumRule),
  status: null,
  description: null,
};

const k8sPeer: Shape = { podSelector: selector, namespaceSelector: selector, ipBlock: { cidr: null, except: null } };
export const K8S_NETWORK_POLICY: Shape = {
  apiVersion: null,
  kind: null,
  metadata: null,
  spec: {
    podSelector: selector,
    policyTypes: null,
    ingress: listOf({ from: listOf(k8sPeer), ports: listOf(portProtocol) }),
    egress: listOf({ to: listOf(k8sPeer), ports: listOf(portProtocol) }),
  },
  status: null,
};

/** The known field a misspelt one most likely meant, if any is close. */
function meant(field: string, shape: Shape): string | undefined {
  return nearMiss(field, Object.keys(shape));
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function walk(v: unknown, node: Node, path: string, out: string[]): void {
  if (node === null || v === null || v === undefined) return;
  if (node instanceof ListOf) {
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, node.items, `${path}[${i}]`, out);
    }
    return;
  }
  const shape: Shape = node;
  if (!isObj(v)) return;
  for (const [k, x] of Object.entries(v)) {
    const where = path ? `${path}.${k}` : k;
    if (!Object.hasOwn(shape, k)) {
      const m = meant(k, shape);
      out.push(
        `${where}: unknown field${m ? ` (did you mean ${m}?)` : ''}; the API server drops fields it does not know, so Cilium never sees it and this part of the policy does nothing: ${m ? `rename it to ${m}` : 'remove or fix it'}`,
      );
      continue;
    }
    walk(x, shape[k]!, where, out);
  }
}

/** Warnings for every field of a policy manifest the API server would drop, by field path. */
export function unknownFields(manifest: unknown, shape: Shape): string[] {
  const out: string[] = [];
  walk(manifest, shape, '', out);
  return out;
}
