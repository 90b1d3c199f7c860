import { type Decoded, dedupe, decodeFiles, type InvalidObject, type ManifestFile } from './decode.js';
import type { Discovery } from './kube/discovery.js';
import { describeId, groupOf, idKey, idOf, type ManifestObject, parseIdKey } from './objects.js';
import { orderWaves } from './order.js';

// Decoded files -> what a sync applies: each object in its namespace (the
// project's default_namespace for namespaced kinds that name none, none for
// cluster-scoped kinds), kinds the API server does not serve and the commit's
// CRDs do not define set aside with kubectl's message, the rest in waves.

export interface Plan {
  waves: ManifestObject[][];
  invalid: InvalidObject[];
  /** Keys of every object the commit holds, valid or not: none of them is pruned. */
  keys: Set<string>;
  /** Keys of the objects a sync applies (the valid ones): recorded in the inventory before they are. */
  applying: Set<string>;
}

export async function plan(files: readonly ManifestFile[], defaultNamespace: string, discovery: Discovery, signal?: AbortSignal): Promise<Plan> {
  const decoded: Decoded = decodeFiles(files);
  await discovery.load(
    decoded.objects.map((m) => m.object.apiVersion),
    signal,
  );
  // Kinds whose CRD is in this commit: scope from the CRD, resource from discovery once it is established.
  const crdScope = new Map<string, boolean>();
  for (const { object } of decoded.objects) {
    if (object.kind !== 'CustomResourceDefinition') continue;
    const spec = object.spec as { group?: string; names?: { kind?: string }; scope?: string } | undefined;
    if (spec?.group && spec.names?.kind) crdScope.set(`${spec.group}/${spec.names.kind}`, spec.scope !== 'Cluster');
  }
  const invalid = [...decoded.invalid];
  const objects: ManifestObject[] = [];
  for (const m of decoded.objects) {
    const o = m.object;
    const namespaced = discovery.lookup(o.apiVersion, o.kind)?.namespaced ?? crdScope.get(`${groupOf(o.apiVersion)}/${o.kind}`);
    if (namespaced === undefined) {
      invalid.push({
        object: describeId(idOf(o)),
        source: m.source,
        index: m.index,
        message: `no matches for kind ${JSON.stringify(o.kind)} in version ${JSON.stringify(o.apiVersion)}`,
        key: idKey(idOf(o)),
      });
      continue;
    }
    if (namespaced && !o.metadata.namespace) o.metadata.namespace = defaultNamespace;
    if (!namespaced) delete o.metadata.namespace;
    objects.push(m);
  }
  const unique = dedupe(objects);
  const applying = new Set(unique.map((m) => idKey(idOf(m.object))));
  const keys = new Set(applying);
  for (const i of invalid) {
    if (!i.key) continue;
    // Its scope may be unknown: protect the live object under either identity.
    keys.add(i.key);
    const id = parseIdKey(i.key);
    if (id && !id.namespace) keys.add(idKey({ ...id, namespace: defaultNamespace }));
  }
  return { waves: orderWaves(unique), invalid, keys, applying };
}
