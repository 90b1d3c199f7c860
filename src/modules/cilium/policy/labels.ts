// Endpoint labels as Hubble reports them: `source:key=value` (k8s:app=web,
// reserved:world, cidr:10.0.0.0/8). Selectors need two views: by exact
// source+key, and by key across every source (a selector key without a source
// means `any:`), so both are built once per distinct endpoint, never per flow.

export const NS_LABEL = 'io.kubernetes.pod.namespace';
export const NS_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
/** Kubernetes sets this label on every namespace (1.21+); NetworkPolicies rely on it. */
export const NS_NAME_LABEL = `${NS_LABELS_PREFIX}kubernetes.io/metadata.name`;

export interface ParsedLabel {
  source: string;
  key: string;
  value: string;
}

/** `k8s:app=web` -> {k8s, app, web}; a label without a source gets `unspec`, as in Cilium. */
export function parseLabel(text: string): ParsedLabel {
  const colon = text.indexOf(':');
  const eq = text.indexOf('=');
  let source = 'unspec';
  let rest = text;
  // A colon after the `=` belongs to the value (label values cannot hold one, but be safe).
  if (colon > 0 && (eq < 0 || colon < eq)) {
    source = text.slice(0, colon);
    rest = text.slice(colon + 1);
  }
  const e = rest.indexOf('=');
  return e < 0 ? { source, key: rest, value: '' } : { source, key: rest.slice(0, e), value: rest.slice(e + 1) };
}

export class LabelSet {
  /** key -> values, whatever the source */
  readonly byKey = new Map<string, string[]>();
  /** "source:key" -> value */
  readonly bySourceKey = new Map<string, string>();
  readonly list: ParsedLabel[] = [];

  constructor(labels: Iterable<ParsedLabel> = []) {
    for (const l of labels) this.add(l);
  }

  add(l: ParsedLabel): void {
    const sk = `${l.source}:${l.key}`;
    if (this.bySourceKey.has(sk)) return;
    this.bySourceKey.set(sk, l.value);
    const vs = this.byKey.get(l.key);
    if (vs) vs.push(l.value);
    else this.byKey.set(l.key, [l.value]);
    this.list.push(l);
  }

  has(source: string, key: string): boolean {
    return source === 'any' ? this.byKey.has(key) : this.bySourceKey.has(`${source}:${key}`);
  }

  /** Values of `key` from `source` (or from every source for `any`). */
  values(source: string, key: string): readonly string[] | undefined {
    if (source === 'any') return this.byKey.get(key);
    const v = this.bySourceKey.get(`${source}:${key}`);
    return v === undefined ? undefined : [v];
  }

  get(source: string, key: string): string | undefined {
    if (source === 'any') return this.byKey.get(key)?.[0];
    return this.bySourceKey.get(`${source}:${key}`);
  }
}

// Reserved identities (numeric) and the entities that name them.
export const RESERVED_IDENTITIES: Readonly<Record<number, string>> = {
  1: 'host',
  2: 'world',
  3: 'unmanaged',
  4: 'health',
  5: 'init',
  6: 'remote-node',
  7: 'kube-apiserver',
  8: 'ingress',
  9: 'world-ipv4',
  10: 'world-ipv6',
};

/** Entity bits of an endpoint, tested against fromEntities/toEntities. */
export const ENTITY = {
  world: 1 << 0,
  worldV4: 1 << 1,
  worldV6: 1 << 2,
  host: 1 << 3,
  remoteNode: 1 << 4,
  init: 1 << 5,
  health: 1 << 6,
  unmanaged: 1 << 7,
  kubeApiserver: 1 << 8,
  ingress: 1 << 9,
  cluster: 1 << 10,
  all: 1 << 11,
} as const;

/** The entity bit of each reserved:<key> label an identity carries. */
const RESERVED_BITS: Readonly<Record<string, number>> = {
  world: ENTITY.world,
  'world-ipv4': ENTITY.worldV4,
  'world-ipv6': ENTITY.worldV6,
  host: ENTITY.host,
  'remote-node': ENTITY.remoteNode,
  init: ENTITY.init,
  health: ENTITY.health,
  unmanaged: ENTITY.unmanaged,
  'kube-apiserver': ENTITY.kubeApiserver,
  ingress: ENTITY.ingress,
};

export const WORLD_BITS = ENTITY.world | ENTITY.worldV4 | ENTITY.worldV6;

/**
 * The entities a policy names (toEntities, fromEntities): those of the reserved
 * labels, world standing for its IPv4 and IPv6 halves too, and all, cluster and none.
 */
export const ENTITY_NAMES: Readonly<Record<string, number>> = { all: ENTITY.all, ...RESERVED_BITS, world: WORLD_BITS, cluster: ENTITY.cluster, none: 0 };

/**
 * Labels of an endpoint as policies see them, with what Hubble leaves implicit
 * filled in: reserved labels from well-known identity numbers, and the pod
 * namespace (and its `kubernetes.io/metadata.name` namespace label) from the
 * endpoint's namespace field when the label list lacks them.
 */
export function endpointLabelSet(
  labels: readonly string[],
  identity: number,
  namespace: string,
  extra: readonly string[] = [],
): { set: LabelSet; flags: number; ns: string } {
  const set = new LabelSet();
  for (const l of labels) set.add(parseLabel(l));
  for (const l of extra) set.add(parseLabel(l));
  if (set.list.length === 0 && identity > 0) {
    const r = RESERVED_IDENTITIES[identity];
    if (r) set.add({ source: 'reserved', key: r, value: '' });
  }
  let flags = 0;
  for (const l of set.list) if (l.source === 'reserved') flags |= RESERVED_BITS[l.key] ?? 0;
  // Local CIDR identities (2^24 and up) and endpoints Hubble could not resolve are outside the cluster.
  if ((flags & WORLD_BITS) === 0 && (identity >= 1 << 24 || (set.list.length === 0 && identity === 0))) flags |= ENTITY.world;
  if ((flags & WORLD_BITS) === 0 && set.list.every((l) => l.source === 'cidr' || l.source === 'fqdn')) {
    if (set.list.length > 0) flags |= ENTITY.world;
  }
  let ns = '';
  if ((flags & WORLD_BITS) === 0) {
    flags |= ENTITY.cluster;
    ns = set.get('k8s', NS_LABEL) ?? '';
    const isReserved = (flags & ~ENTITY.cluster) !== 0;
    if (ns === '' && namespace !== '' && !isReserved) {
      ns = namespace;
      set.add({ source: 'k8s', key: NS_LABEL, value: ns });
    }
    if (ns !== '' && !set.has('k8s', NS_NAME_LABEL)) set.add({ source: 'k8s', key: NS_NAME_LABEL, value: ns });
  }
  flags |= ENTITY.all;
  return { set, flags, ns };
}
