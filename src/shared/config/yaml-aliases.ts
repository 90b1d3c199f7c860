import { type Alias, type Document, isAlias, isMap, isScalar, isSeq, type Node, Pair, visit } from 'yaml';

// Anchors, aliases and merge keys as GitLab's Go YAML parser reads them
// (`x-defaults: &d {...}` then `<<: *d`, `environments: *envs`). Validators
// read nodes, for their lines, so each alias becomes a copy of the node it
// names, and each merge key the pairs it brings, before validation. A copy
// keeps the lines where its values are written; `via` remembers the alias
// that brought it, for messages.
//
// Expanding is where an alias bomb would cost, so the copies are counted here:
// the yaml library's maxAliasCount guards its own toJS, which validation does
// not use.

/** Copies made for aliases past this are an alias bomb, not a configuration. */
const MAX_ALIAS_NODES = 100_000;

export interface AliasProblem {
  node: Node;
  path: string;
  message: string;
}

export interface Expanded {
  contents: Node | null;
  /** The outermost alias each copied node came through. */
  via: WeakMap<Node, Alias>;
  /** The nodes, as written (not copies), whose anchor some alias names. */
  aliased: WeakSet<Node>;
  /** Merge keys that bring no mapping; their pairs are dropped. */
  problems: AliasProblem[];
  /** A cycle or a bomb: nothing can be validated. */
  fatal?: AliasProblem;
}

class Stop extends Error {
  constructor(readonly problem: AliasProblem) {
    super(problem.message);
  }
}

function isMergeKey(key: unknown): boolean {
  return isScalar(key) && typeof key.value === 'symbol' && key.value.description === '<<';
}

/** The same node with other items, or a copy of a scalar (shallow: the items are expanded by the caller). */
function copy<T extends Node>(node: T): T {
  return Object.create(Object.getPrototypeOf(node), Object.getOwnPropertyDescriptors(node)) as T;
}

/** Expands aliases and merge keys of a document parsed with `merge: true`. Undefined aliases stay, for validators to explain. */
export function expandAliases(doc: Document.Parsed): Expanded {
  // An alias names the last node anchored before it, in document order.
  const targets = new Map<Alias, Node>();
  const anchors = new Map<string, Node>();
  visit(doc, {
    Node(_, node) {
      if (isAlias(node)) {
        const t = anchors.get(node.source);
        if (t) targets.set(node, t);
      } else if (node.anchor) {
        anchors.set(node.anchor, node);
      }
    },
  });
  const via = new WeakMap<Node, Alias>();
  const named = new Set(targets.values());
  const aliased = new WeakSet<Node>();
  const problems: AliasProblem[] = [];
  // The nodes being expanded: an alias to one of them is inside its own anchor.
  const open = new Set<Node>();
  let copies = 0;

  // `through` is the outermost alias the node is copied for, `entered` the path where that alias is written.
  const expand = (node: Node, path: string, through: Alias | undefined, entered = path): Node => {
    if (isAlias(node)) {
      const target = targets.get(node);
      if (!target) return node;
      if (open.has(target)) {
        throw new Stop({
          node,
          path,
          message: `the alias *${node.source} is inside the value anchored &${node.source}, which would never end; write the inner value out`,
        });
      }
      return through ? expand(target, path, through, entered) : expand(target, path, node, path);
    }
    const out = through || isMap(node) || isSeq(node) ? copy(node) : node;
    if (!through && named.has(node)) aliased.add(out);
    if (through) {
      via.set(out, through);
      if (++copies > MAX_ALIAS_NODES) {
        // Reported where the outer alias is written: the path and line of the same place.
        throw new Stop({
          node: through,
          path: entered,
          message: `aliases expand to more than ${MAX_ALIAS_NODES} values (an alias bomb); write the values out or nest fewer aliases`,
        });
      }
    }
    open.add(node);
    if (isSeq(node)) (out as typeof node).items = node.items.map((item, i) => expand(item as Node, `${path}[${i}]`, through, entered));
    if (isMap(node)) (out as typeof node).items = mapPairs(node.items as Pair<Node, Node>[], path, through, entered);
    open.delete(node);
    return out;
  };

  // Keys set in the mapping win over merged ones; of merged mappings, the first to set a key wins (YAML's merge key).
  const mapPairs = (pairs: Pair<Node, Node>[], path: string, through: Alias | undefined, entered: string): Pair<Node, Node>[] => {
    const name = (k: Node | null) => (isScalar(k) ? String(k.value) : undefined);
    const taken = new Set(pairs.filter((p) => !isMergeKey(p.key)).map((p) => name(p.key)));
    const out: Pair<Node, Node>[] = [];
    for (const p of pairs) {
      const at = (k: string) => (path ? `${path}.${k}` : k);
      if (!isMergeKey(p.key)) {
        const k = at(name(p.key) ?? '?');
        out.push(new Pair(expand(p.key, k, through, entered), p.value === null ? null : expand(p.value, k, through, entered)));
        continue;
      }
      const value = p.value === null ? null : expand(p.value, at('<<'), through, entered);
      const sources = isSeq(value) ? (value.items as Node[]) : [value];
      for (const s of sources) {
        if (!isMap(s)) {
          const alias = isAlias(s) ? `*${s.source} names no anchor set before it; ` : '';
          problems.push({
            node: (s ?? p.key) as Node,
            path: at('<<'),
            message: `${alias}a merge key takes a mapping, e.g. <<: *defaults with defaults: &defaults { ... }, or a list of them, <<: [*a, *b]`,
          });
          continue;
        }
        for (const q of s.items as Pair<Node, Node>[]) {
          const k = name(q.key);
          if (k !== undefined && taken.has(k)) continue;
          taken.add(k);
          out.push(q);
        }
      }
    }
    return out;
  };

  try {
    return { contents: doc.contents === null ? null : expand(doc.contents as Node, '', undefined), via, aliased, problems };
  } catch (e) {
    if (e instanceof Stop) return { contents: null, via, aliased, problems, fatal: e.problem };
    throw e;
  }
}
