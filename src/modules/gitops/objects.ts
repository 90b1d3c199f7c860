// A Kubernetes object as GitOps handles it, and its identity: the key
// cli-utils uses in an inventory (`<namespace>_<name>_<group>_<kind>`), so
// inventories written by the original agent read the same.

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface ObjectId {
  group: string;
  kind: string;
  /** "" for cluster-scoped objects. */
  namespace: string;
  name: string;
}

/** An object of a manifest, with where it came from for messages. */
export interface ManifestObject {
  object: KubeObject;
  /** File in the project. */
  source: string;
  /** 1-based document (or List item) number in the file. */
  index: number;
}

export function groupOf(apiVersion: string): string {
  const i = apiVersion.indexOf('/');
  return i < 0 ? '' : apiVersion.slice(0, i);
}

export function idOf(o: KubeObject): ObjectId {
  return { group: groupOf(o.apiVersion), kind: o.kind, namespace: o.metadata.namespace ?? '', name: o.metadata.name ?? '' };
}

/** The inventory key: cli-utils' ObjMetadata string. */
export function idKey(id: ObjectId): string {
  return `${id.namespace}_${id.name}_${id.group}_${id.kind}`;
}

export function parseIdKey(key: string): ObjectId | undefined {
  // Names and namespaces hold no "_"; a group may not either: the split is unambiguous.
  const parts = key.split('_');
  if (parts.length !== 4) return undefined;
  const [namespace, name, group, kind] = parts as [string, string, string, string];
  return { namespace, name, group, kind };
}

/** As people read it: "ConfigMap shop/web", "apps/Deployment shop/web", "Namespace shop". */
export function describeId(id: ObjectId): string {
  return `${id.group ? `${id.group}/` : ''}${id.kind} ${id.namespace ? `${id.namespace}/` : ''}${id.name}`;
}

export const ANNOTATION_OWNING_INVENTORY = 'config.k8s.io/owning-inventory';
export const ANNOTATION_DEPENDS_ON = 'config.kubernetes.io/depends-on';
export const ANNOTATION_ON_REMOVE = 'cli-utils.sigs.k8s.io/on-remove';
export const ANNOTATION_DELETION = 'client.lifecycle.config.k8s.io/deletion';
export const LABEL_INVENTORY_ID = 'cli-utils.sigs.k8s.io/inventory-id';

/** Whether an object opted out of pruning (cli-utils' on-remove: keep, or the older deletion: detach). */
export function keepOnRemove(o: { metadata?: { annotations?: Record<string, string> } }): boolean {
  const a = o.metadata?.annotations ?? {};
  return a[ANNOTATION_ON_REMOVE] === 'keep' || a[ANNOTATION_DELETION] === 'detach';
}
