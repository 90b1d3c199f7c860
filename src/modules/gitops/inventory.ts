import { createHash } from 'node:crypto';
import { kubeApiStatus } from '../../agent/kubernetes/errors.js';
import { isVerdictError, VerdictError } from '../../shared/errors.js';
import type { KubeApi } from './kube/api.js';
import { ANNOTATION_OWNING_INVENTORY, LABEL_INVENTORY_ID } from './objects.js';

// The inventory: which objects a manifest project put in the cluster, so the
// next sync knows what to prune. A ConfigMap in cli-utils' format (label
// cli-utils.sigs.k8s.io/inventory-id, one data key per object,
// <namespace>_<name>_<group>_<kind>), and every applied object annotated
// config.k8s.io/owning-inventory with the id: inventories and objects the
// original agent wrote read the same way, and can be adopted.

export type InventoryPolicy = 'must_match' | 'adopt_if_no_inventory' | 'adopt_all';

export interface InventoryRef {
  namespace: string;
  name: string;
  /** The label value and the owning-inventory annotation value. */
  id: string;
}

/** Lowercase, every run of other characters than letters, digits and "-" a "-": how ids enter inventory names. */
function dashed(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9-]+/g, '-');
}

/** Lowercase letters, digits and "-" only, at most `max` characters (a hash keeps long ones distinct). */
function dnsSafe(s: string, max: number): string {
  const clean = dashed(s).replace(/^-+|-+$/g, '');
  if (clean.length <= max) return clean;
  const hash = createHash('sha256').update(s).digest('hex').slice(0, 10);
  return `${clean.slice(0, max - 11).replace(/-+$/, '')}-${hash}`;
}

/** What stands for the configuration project (a manifest project without id) in its inventory's name. */
export const CONFIG_PROJECT_INVENTORY = 'config';

/**
 * The part of an inventory's name and id that the project id makes, as inventoryRef writes it: projects of one
 * agent with the same part share an inventory (`group/app`, `group.app` and `Group/App`; `config` and the
 * configuration project). Ids longer than the name's limit are hashed whole and so stay apart, but the
 * configuration refuses them alike rather than depend on the agent name's length.
 */
export function inventoryPart(projectId: string | undefined): string {
  // Its leading dashes stay: in a name it follows `<agent>-`, so only the end is trimmed.
  return dashed(projectId || CONFIG_PROJECT_INVENTORY).replace(/-+$/, '');
}

export function inventoryRef(agentName: string, projectId: string, namespace: string): InventoryRef {
  const id = dnsSafe(`${agentName}-${projectId}`, 63);
  return { namespace, name: dnsSafe(`inventory-${agentName}-${projectId}`, 253), id };
}

/** Why the policy refuses to apply over a live object, or undefined when it may. cli-utils' wording. */
export function applyRefusal(policy: InventoryPolicy, ours: string, owner: string | undefined): string | undefined {
  if (owner === ours) return undefined;
  if (owner === undefined || owner === '') {
    if (policy !== 'must_match') return undefined;
    return `inventory policy prevented actuation (strategy: Apply, status: NoMatch, policy: MustMatch): the object exists and belongs to no inventory; set inventory_policy: adopt_if_no_inventory (or adopt_all) to take it over`;
  }
  if (policy === 'adopt_all') return undefined;
  const name = policy === 'must_match' ? 'MustMatch' : 'AdoptIfNoInventory';
  return `inventory policy prevented actuation (strategy: Apply, status: NoMatch, policy: ${name}): the object belongs to inventory ${JSON.stringify(owner)}; set inventory_policy: adopt_all to take it over`;
}

export function ownerOf(o: { metadata?: { annotations?: Record<string, string> } } | undefined): string | undefined {
  return o?.metadata?.annotations?.[ANNOTATION_OWNING_INVENTORY];
}

const path = (ref: InventoryRef, name?: string) =>
  `/api/v1/namespaces/${encodeURIComponent(ref.namespace)}/configmaps${name ? `/${encodeURIComponent(name)}` : ''}`;

/** The object keys the inventory holds, or undefined when there is none yet. */
export async function readInventory(api: KubeApi, ref: InventoryRef, signal?: AbortSignal): Promise<Set<string> | undefined> {
  try {
    const r = await api.request<{ data?: Record<string, string> }>({ method: 'GET', path: path(ref, ref.name), signal });
    return new Set(Object.keys(r.body.data ?? {}));
  } catch (e) {
    if (kubeApiStatus(e) === 404) return undefined;
    throw e;
  }
}

export async function writeInventory(api: KubeApi, ref: InventoryRef, keys: Iterable<string>, fieldManager: string, signal?: AbortSignal): Promise<void> {
  const body = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: ref.name, namespace: ref.namespace, labels: { [LABEL_INVENTORY_ID]: ref.id } },
    data: Object.fromEntries([...keys].sort().map((k) => [k, ''])),
  };
  try {
    await api.request({
      method: 'PATCH',
      path: path(ref, ref.name),
      query: { fieldManager, force: 'true' },
      body,
      contentType: 'application/apply-patch+yaml',
      signal,
    });
  } catch (e) {
    // The API server's bare `namespaces "x" not found` names neither the object nor the fix. Same code and details, so callers still read the status.
    if (!isVerdictError(e, 'VERDICT_KUBE_API')) throw e;
    const hint =
      kubeApiStatus(e) === 404
        ? `; the inventory is kept in the project's default_namespace "${ref.namespace}", which must exist: create it, or add its Namespace to the project`
        : '';
    throw new VerdictError('VERDICT_KUBE_API', `cannot write the inventory ConfigMap ${ref.namespace}/${ref.name}: ${e.message}${hint}`, {
      cause: e,
      ...(e.details ? { details: e.details } : {}),
    });
  }
}
