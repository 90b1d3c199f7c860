// The changed fields of an object, one line each ("spec.replicas: 2 -> 3"), at
// the finest level that still says what changed, as `kubectl diff` readers
// expect: one container's image, not the whole containers list. Lists whose
// elements all carry a distinct `name` (containers, env, ports, volumes,
// volumeMounts) are matched by it, so an element added in the middle does not
// show every later one as changed. Only for display: strategic merge keys some
// of these lists by another field (mountPath, containerPort).

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const show = (v: unknown) => (v === undefined ? '(none)' : JSON.stringify(v));

/** Each element's name, or undefined when some element has none or two share one: then the list has no merge key. */
function namesOf(list: readonly unknown[]): string[] | undefined {
  const names = list.map((e) => (isObj(e) && typeof e.name === 'string' ? e.name : undefined));
  if (names.some((n) => n === undefined) || new Set(names).size !== names.length) return undefined;
  return names as string[];
}

/** `containers[name=app]`: the element's merge key in the path, which stays the same when elements move. */
const named = (path: string, name: string) => `${path}[name=${name}]`;

function diffLists(a: readonly unknown[], b: readonly unknown[], path: string): string[] {
  const an = namesOf(a);
  const bn = namesOf(b);
  if (an && bn) {
    const before = new Map(an.map((n, i) => [n, a[i]]));
    const after = new Map(bn.map((n, i) => [n, b[i]]));
    // Removed ones where they were, then each of the new list's in its order (changed or added).
    const lines = [
      ...an.filter((n) => !after.has(n)).flatMap((n) => diffFields(before.get(n), undefined, named(path, n))),
      ...bn.flatMap((n) => diffFields(before.get(n), after.get(n), named(path, n))),
    ];
    // The same elements in another order is a change too (env entries may refer to earlier ones).
    const kept = an.filter((n) => after.has(n));
    const keptAfter = bn.filter((n) => before.has(n));
    if (!same(kept, keptAfter)) lines.push(`${path} (order by name): ${show(kept)} -> ${show(keptAfter)}`);
    return lines;
  }
  // No merge key: element by element when none was added or removed, else the index says nothing of which one.
  if (a.length === b.length) return a.flatMap((e, i) => diffFields(e, b[i], `${path}[${i}]`));
  return [`${path}: ${show(a)} -> ${show(b)}`];
}

/** The changed fields between `a` (what the cluster holds) and `b` (what it would hold), sorted by key within each map. */
export function diffFields(a: unknown, b: unknown, path = ''): string[] {
  if (same(a, b)) return [];
  if (isObj(a) && isObj(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
    return keys.flatMap((k) => diffFields(a[k], b[k], path ? `${path}.${k}` : k));
  }
  if (Array.isArray(a) && Array.isArray(b) && path) return diffLists(a, b, path);
  return [`${path || '(object)'}: ${show(a)} -> ${show(b)}`];
}
