import { type Alias, Document, isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, Scalar } from 'yaml';
import { daysOrWeeksHint, durationMs } from './duration.js';
import { VerdictError } from '../errors.js';
import { expandAliases } from './yaml-aliases.js';
import { nearMiss } from '../near-miss.js';

// A small validator for YAML configuration that reports every problem with the
// file, the path inside the document and the line, because "invalid config"
// without a location is the support question operators of the original asked most.

export interface ConfigIssue {
  file: string;
  path: string; // e.g. cilium.hubble_relay_address
  line: number; // 1-based, 0 when unknown
  message: string;
}

/**
 * The VERDICT_CONFIG_INVALID error, typed: it carries each issue with its file,
 * path and line (also as `details.issues` for API answers).
 */
export class ConfigError extends VerdictError {
  /** `warnings`: what else was found in the file, for tools that show everything (verdict config check). */
  constructor(
    readonly issues: ConfigIssue[],
    readonly warnings: ConfigIssue[] = [],
  ) {
    super('VERDICT_CONFIG_INVALID', issues.map(formatIssue).join('; '), { details: { issues } });
  }
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.file}${i.line ? `:${i.line}` : ''}: ${i.path || '(document)'}: ${i.message}`;
}

export interface ConfigCtx {
  file: string;
  lines: LineCounter;
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
  /**
   * Set inside a key Verdict does not use (see `unused`): its problems are
   * still found, with the original's rules, but reported as warnings, because
   * a key Verdict ignores must not stop the modules it runs.
   */
  unusedRoot?: string;
  /** The alias each node copied for one came through (yaml-aliases.ts): its line is the anchor's. */
  via?: WeakMap<Node, Alias>;
  /** The values as written whose anchor an alias names (yaml-aliases.ts). */
  aliased?: WeakSet<Node>;
  /** Paths of the unknown and unused keys found, whose problems are warnings (expansion problems are placed after validation). */
  ignored?: string[];
}

/**
 * Validates one node. `key` is the mapping key the node hangs under, when
 * there is one: a problem with the whole value is reported at the key's line.
 */
export type Validator<T> = ((node: Node | null | undefined, path: string, ctx: ConfigCtx, key?: Node) => T | undefined) & {
  /** Its values are secrets (or may name a file holding one): no message echoes them, and nothing runs it just to word a message. */
  sensitive?: boolean;
};

export function lineOf(node: Node | null | undefined, ctx: ConfigCtx): number {
  const start = node?.range?.[0];
  return start === undefined ? 0 : ctx.lines.linePos(start).line;
}

/**
 * An issue at a node. A value that came through an alias is reported at the
 * line where it is written, and the message names the alias that put it at
 * this path. No anchor is named: through nested aliases (*b holding *a) the
 * value is written under another anchor than the alias used here.
 */
function issueAt(ctx: ConfigCtx, node: Node | null | undefined, path: string, message: string): ConfigIssue {
  const line = lineOf(node, ctx);
  const alias = node ? ctx.via?.get(node) : undefined;
  const through = alias ? ` (used through *${alias.source} at line ${lineOf(alias, ctx)})` : '';
  return { file: ctx.file, path, line, message: `${message}${through}` };
}

/** What is wrong with an alias left after expansion (yaml-aliases.ts): no anchor of its name is set before it. */
function undefinedAlias(node: Alias): string {
  return `is a YAML alias (*${node.source}) naming no anchor: set &${node.source} on a value before it (key: &${node.source} value), or write the value out`;
}

/** Records a problem at a node; returns undefined so validators can `return reportIssue(...)`. */
export function reportIssue(ctx: ConfigCtx, node: Node | null | undefined, path: string, message: string): undefined {
  // "must be a mapping" would mislead: the value is an alias that names nothing.
  if (isAlias(node) && !message.includes('YAML alias')) message = undefinedAlias(node);
  if (ctx.unusedRoot !== undefined) {
    ctx.warnings.push(issueAt(ctx, node, path, ignoredProblem(message, ctx.unusedRoot)));
  } else {
    ctx.issues.push(issueAt(ctx, node, path, message));
  }
  return undefined;
}

function ignoredProblem(message: string, root: string): string {
  return `${message} (the GitLab agent would refuse this; Verdict does not use ${root}, so it is ignored)`;
}

/** The unknown or unused key `path` is inside, if any. */
function ignoredRoot(ctx: ConfigCtx, path: string): string | undefined {
  return ctx.ignored?.find((r) => path === r || path.startsWith(`${r}.`) || path.startsWith(`${r}[`));
}

function isNull(node: Node | null | undefined): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

function scalarValue(node: Node | null | undefined): unknown {
  return isScalar(node) ? node.value : undefined;
}

/** The scalar as written in the file (YAML reads `1.10` as 1.1; the fix should quote what the user wrote). */
function sourceText(node: Node | null | undefined): string | undefined {
  return isScalar(node) ? (node.source ?? String(node.value)) : undefined;
}

/** The key a value hangs under, from its path (`a.b[0].environments` → environments), if the path ends in one. */
function keyName(path: string): string | undefined {
  const last = path.split('.').pop();
  return last && !last.endsWith(']') ? last : undefined;
}

/**
 * "must be a <kind>" for a value of the wrong type, with the form that was
 * meant: the declared example, else one built from what was written (a
 * number quoted), so each type error carries its fix.
 */
function wrongType(node: Node | null | undefined, path: string, kind: 'a string' | 'a mapping', example?: string): string {
  const written = sourceText(node);
  const prefix = keyName(path) ? `${keyName(path)}: ` : '';
  if (example) return `must be ${kind}, e.g. ${example}`;
  const v = scalarValue(node);
  if (kind === 'a string' && written !== undefined && (typeof v === 'number' || typeof v === 'boolean')) {
    return `must be a string (quote it: ${prefix}${JSON.stringify(written)})`;
  }
  return `must be ${kind}`;
}

/** `sensitive`: the value is a secret; messages say what is wrong without quoting it (see Validator.sensitive). */
export const str = (opts: { pattern?: RegExp; hint?: string; nonEmpty?: boolean; sensitive?: boolean } = {}): Validator<string> => {
  const check: Validator<string> = (node, path, ctx) => {
    // An unquoted value starting with "*" (glob: **/*.yaml, environments: [*-staging]) is a YAML alias;
    // one whose anchor is set was expanded (yaml-aliases.ts), so this one names nothing and was meant as text.
    if (isAlias(node)) {
      const key = keyName(path);
      if (opts.sensitive) return reportIssue(ctx, node, path, `is a YAML alias naming no anchor: a ${key ?? 'value'} starting with "*" must be quoted`);
      return reportIssue(
        ctx,
        node,
        path,
        `is a YAML alias (*${node.source}) naming no anchor: a ${key ?? 'value'} starting with "*" must be quoted, ${key ? `${key}: ` : ''}"*${node.source}"`,
      );
    }
    const v = scalarValue(node);
    if (typeof v !== 'string') {
      // Quoting helps only when the text as written is a valid value (uid: 1000, not http_addr: 8080).
      const quoted = sourceText(node);
      if ((typeof v === 'number' || typeof v === 'boolean') && quoted !== undefined && (!opts.pattern || opts.pattern.test(quoted))) {
        return reportIssue(ctx, node, path, opts.sensitive ? 'must be a string (put it in quotes)' : wrongType(node, path, 'a string'));
      }
      return reportIssue(ctx, node, path, `must be a string${opts.hint ? ` (${opts.hint})` : ''}`);
    }
    if (opts.nonEmpty && v.trim() === '') return reportIssue(ctx, node, path, 'must not be empty');
    if (opts.pattern && !opts.pattern.test(v)) {
      return reportIssue(ctx, node, path, `${opts.sensitive ? 'is' : `"${v}" is`} not valid${opts.hint ? `: ${opts.hint}` : ''}`);
    }
    return v;
  };
  if (opts.sensitive) check.sensitive = true;
  return check;
};

export const bool = (): Validator<boolean> => (node, path, ctx) => {
  const v = scalarValue(node);
  if (typeof v !== 'boolean') return reportIssue(ctx, node, path, `must be true or false${v === 'true' || v === 'false' ? ', without quotes' : ''}`);
  return v;
};

export const int =
  (opts: { min?: number; max?: number } = {}): Validator<number> =>
  (node, path, ctx) => {
    const v = scalarValue(node);
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      return reportIssue(ctx, node, path, `must be a whole number${typeof v === 'string' && /^-?\d+$/.test(v) ? ', without quotes' : ''}`);
    }
    if (opts.min !== undefined && v < opts.min) return reportIssue(ctx, node, path, `must be at least ${opts.min}`);
    if (opts.max !== undefined && v > opts.max) return reportIssue(ctx, node, path, `must be at most ${opts.max}`);
    return v;
  };

/**
 * The message for a value outside a fixed set. The values are quoted: one of
 * them may be "" (dry_run_strategy), which unquoted reads as a stray comma.
 */
export function notOneOf(values: readonly unknown[], got: unknown): string {
  return `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}; got ${JSON.stringify(got ?? null)}`;
}

export const oneOf =
  <T extends string>(values: readonly T[]): Validator<T> =>
  (node, path, ctx) => {
    const v = scalarValue(node);
    if (typeof v !== 'string' || !values.includes(v as T)) return reportIssue(ctx, node, path, notOneOf(values, v));
    return v as T;
  };

/** Durations as "500ms", "10s", "5m", "1h", "1h30m" or "3600s"; returns milliseconds. */
export const duration =
  (opts: { min?: number; max?: number; maxWhy?: string } = {}): Validator<number> =>
  (node, path, ctx) => {
    const v = scalarValue(node);
    const ms = typeof v === 'string' ? durationMs(v) : undefined;
    if (ms === undefined) {
      const long = typeof v === 'string' ? daysOrWeeksHint(v) : undefined;
      if (long) return reportIssue(ctx, node, path, `must be a duration such as 500ms, 10s, 5m or 1h; ${long}`);
      const unit = typeof v === 'number' ? ` (a number needs a unit: ${v}s)` : '';
      return reportIssue(ctx, node, path, `must be a duration such as 500ms, 10s, 5m or 1h, got ${JSON.stringify(v ?? null)}${unit}`);
    }
    if (opts.min !== undefined && ms < opts.min) return reportIssue(ctx, node, path, `must be at least ${opts.min} ms`);
    if (opts.max !== undefined && ms > opts.max) return reportIssue(ctx, node, path, `must be at most ${opts.max} ms${opts.maxWhy ? ` (${opts.maxWhy})` : ''}`);
    return ms;
  };

/**
 * wrongType for a list. A value that is itself a valid item is shown in
 * brackets (brokers: [kafka-0:9092]). One that is not would make a wrong
 * example (allow_private_addresses: [true]), so the list's declared example
 * is shown, else the value quoted if that makes it an item (namespaces: ["5"]),
 * else what an item must be (policies: each item must be a mapping...).
 * A list of secrets (item.sensitive) shows only its example.
 */
function listExpected<T>(node: Node | null | undefined, path: string, ctx: ConfigCtx, item: Validator<T>, example?: string): string {
  const written = sourceText(node);
  const prefix = keyName(path) ? `${keyName(path)}: ` : '';
  const asItem = (n: Node): string | undefined => {
    const scratch: ConfigCtx = { ...ctx, issues: [], warnings: [], unusedRoot: undefined };
    const v = item(n, `${path}[0]`, scratch);
    return scratch.issues[0]?.message ?? (v === undefined ? 'is not valid' : undefined);
  };
  // A secret is never echoed, and never checked as an item: that would read file: paths just to word this message.
  if (node && written !== undefined && written !== '' && !item.sensitive) {
    const why = asItem(node);
    if (why === undefined) return `must be a list, e.g. ${prefix}[${/^[\w./@-]+$/.test(written) ? written : JSON.stringify(written)}]`;
    if (!example && asItem(new Scalar(written)) === undefined) return `must be a list, e.g. ${prefix}[${JSON.stringify(written)}]`;
    if (!example && why.startsWith('must be ')) return `must be a list; each item ${why}`;
  }
  if (example) return `must be a list, e.g. ${example}`;
  if (item.sensitive) return 'must be a list of secrets, e.g. [env:VAR] or [file:/path]';
  return isMap(node) ? 'must be a list (start each item with "- ")' : 'must be a list';
}

/** `example`: the list as it is written, shown when something that is not one of its items is given instead. */
export const list =
  <T>(item: Validator<T>, opts: { min?: number; max?: number; maxWhy?: string; example?: string } = {}): Validator<T[]> =>
  (node, path, ctx) => {
    if (!isSeq(node)) return reportIssue(ctx, node, path, listExpected(node, path, ctx, item, opts.example));
    if (opts.min !== undefined && node.items.length < opts.min) return reportIssue(ctx, node, path, `must have at least ${opts.min} item(s)`);
    if (opts.max !== undefined && node.items.length > opts.max) {
      return reportIssue(ctx, node, path, `has ${node.items.length} items, more than ${opts.max}${opts.maxWhy ? ` (${opts.maxWhy})` : ''}`);
    }
    const out: T[] = [];
    node.items.forEach((n, i) => {
      const v = item(n as Node, `${path}[${i}]`, ctx);
      if (v !== undefined) out.push(v);
    });
    return out;
  };

export const stringMap = (): Validator<Record<string, string>> => (node, path, ctx) => {
  if (!isMap(node)) return reportIssue(ctx, node, path, 'must be a mapping of names to strings');
  const out: Record<string, string> = {};
  for (const pair of node.items) {
    const k = String(scalarValue(pair.key as Node));
    const v = scalarValue(pair.value as Node);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      reportIssue(ctx, pair.value as Node, `${path}.${k}`, wrongType(pair.value as Node, `${path}.${k}`, 'a string'));
      continue;
    }
    out[k] = String(v);
  }
  return out;
};

// K records at the type level whether a value is always present (required or
// defaulted) or may be undefined.
type Field<T, K extends 'always' | 'maybe' = 'always' | 'maybe'> = {
  v: Validator<T> & { wantsNull?: boolean };
  required?: boolean;
  default?: T;
  readonly __k?: K;
};
type Shape = Record<string, Field<any>>;
type Out<S extends Shape> = {
  [K in keyof S]: S[K] extends Field<infer T, infer P> ? ('maybe' extends P ? T | undefined : T) : never;
};

export function field<T>(v: Validator<T>, opts: { required: true }): Field<T, 'always'>;
export function field<T>(v: Validator<T>, opts: { default: T }): Field<T, 'always'>;
export function field<T>(v: Validator<T>, opts?: Record<string, never>): Field<T, 'maybe'>;
export function field<T>(v: Validator<T>, opts: { required?: boolean; default?: T } = {}): Field<T> {
  return { v, ...opts };
}

/**
 * A mapping with known keys. Unknown keys are errors unless `open`, in which
 * case they are warnings (real configs carry keys of agent versions Verdict
 * does not know; only blocks that Verdict alone defines are closed).
 *
 * `misspeltIsError`: in an open mapping, an unknown key that is a near-miss of
 * a known one is an error after all, with this reason. For blocks where a key
 * dropped as unknown widens access (ci_access restrictions): a later GitLab
 * version's key is still a warning, a misspelt restriction refuses the file.
 *
 * `example`: the mapping as it is written, shown when something else is given.
 *
 * `foreign`: keys of another program's file that people bring along (the GitLab KAS's server config), as
 * dotted paths from this mapping, each with what to write here instead, and what that file is; an unknown
 * key names those of its paths that the file has (or its own entry), rather than a plain "unknown key".
 */
export const obj =
  <S extends Shape>(
    shape: S,
    opts: { open?: boolean; misspeltIsError?: string; example?: string; foreign?: { from: string; keys: Record<string, string> } } = {},
  ): Validator<Out<S>> =>
  (node, path, ctx, key) => {
    if (isNull(node)) {
      node = undefined;
    } else if (!isMap(node)) {
      return reportIssue(ctx, node, path, mappingExpected(node, path, keysUsedFirst(shape), opts.example));
    }
    const seen = new Map<string, { value: Node; key: Node }>();
    if (node) {
      for (const pair of node.items) {
        const k = String(scalarValue(pair.key as Node));
        seen.set(k, { value: pair.value as Node, key: pair.key as Node });
        if (k in shape) continue;
        const p = path ? `${path}.${k}` : k;
        const instead = opts.foreign ? foreignHint(k, pair.value as Node | null, opts.foreign) : undefined;
        const meant = instead === undefined ? nearMiss(k, Object.keys(shape)) : undefined;
        const hint = instead !== undefined ? `; ${opts.foreign!.from}: ${instead}` : meant === undefined ? '' : ` (did you mean "${meant}"?)`;
        if (meant !== undefined && opts.misspeltIsError !== undefined) {
          reportIssue(ctx, pair.key as Node, p, `unknown key; rename it to ${meant}: ${opts.misspeltIsError}`);
        } else if (opts.open || ctx.unusedRoot !== undefined) {
          // A section that holds anchors (x-defaults: &d ...) is there for its aliases, not as configuration;
          // one whose anchor no alias names, or that is itself a copy, is just unknown (a misspelt section).
          const value = pair.value as Node | null;
          const anchor = value?.anchor && ctx.aliased?.has(value) && !ctx.via?.has(value) ? value.anchor : undefined;
          const why = anchor ? `its value is read only where *${anchor} is used${hint}` : `no version of the GitLab agent or of Verdict has it${hint}`;
          ctx.warnings.push(issueAt(ctx, pair.key as Node, p, `${path ? 'unknown key' : 'unknown section'}, ignored: ${why}`));
          ctx.ignored?.push(p);
        } else {
          ctx.issues.push(issueAt(ctx, pair.key as Node, p, `unknown key; known keys: ${Object.keys(shape).join(', ')}${hint}`));
        }
      }
    }
    const out: Record<string, unknown> = {};
    const before = ctx.issues.length;
    for (const [k, f] of Object.entries(shape)) {
      const p = path ? `${path}.${k}` : k;
      const child = seen.get(k);
      if (child && f.v.wantsNull) {
        f.v(child.value, p, ctx, child.key);
        continue;
      }
      if (child === undefined || isNull(child.value)) {
        // `falco:` with nothing under it reads as "turn it on" to whoever wrote it; YAML makes it null, which is absent.
        // Keys with a default take it; inside a section Verdict ignores, the section's own warning is enough.
        if (child !== undefined && !f.required && !('default' in f) && ctx.unusedRoot === undefined)
          ctx.warnings.push(
            issueAt(
              ctx,
              child.key,
              p,
              path
                ? 'has no value, so it is as if it were not written; give it a value or remove the line'
                : 'has no value, so it is taken as not there (a module block turns nothing on); write its settings under it, or remove the line',
            ),
          );
        if (f.required) reportIssue(ctx, child?.key ?? node ?? key, p, 'is required');
        else if ('default' in f) out[k] = structuredClone(f.default);
        continue;
      }
      const v = f.v(child.value, p, ctx, child.key);
      if (v !== undefined) out[k] = v;
    }
    return ctx.issues.length > before && !node ? undefined : (out as Out<S>);
  };

/** wrongType for a mapping, naming its keys when there is no example (an empty one is `{}`). */
function mappingExpected(node: Node | null | undefined, path: string, keys: string[], example?: string): string {
  if (example || keys.length === 0) return wrongType(node, path, 'a mapping', example ?? `${keyName(path) ? `${keyName(path)}: ` : ''}{}`);
  return `must be a mapping with keys such as ${keys.slice(0, 5).join(', ')}${keys.length > 5 ? ', …' : ''}`;
}

/**
 * What to write instead of a foreign key `k` (value `value`): the foreign paths under it that the file
 * has, each with its equivalent, else the entry of `k` itself; undefined when `k` is not foreign.
 */
function foreignHint(k: string, value: Node | null, foreign: { keys: Record<string, string> }): string | undefined {
  const has = (rest: string[]): boolean => {
    let n: unknown = value;
    for (const part of rest) {
      if (!isMap(n)) return false;
      n = n.get(part, true);
      if (n === undefined) return false;
    }
    return true;
  };
  const found = Object.entries(foreign.keys)
    .filter(([p]) => p.startsWith(`${k}.`) && has(p.split('.').slice(1)))
    .map(([p, v]) => `instead of ${p}, write ${v}`);
  if (found.length > 0) return found.join('; ');
  return foreign.keys[k];
}

/** A shape's keys, those Verdict acts on before those it accepts and ignores (unused): the example keys name what to write. */
function keysUsedFirst(shape: Shape): string[] {
  const keys = Object.keys(shape);
  const ignored = (k: string) => UNUSED.has(shape[k]!.v);
  return [...keys.filter((k) => !ignored(k)), ...keys.filter(ignored)];
}

/** The validators unused() made: their keys are named last in a mapping's example keys. */
const UNUSED = new WeakSet<object>();

/**
 * A key of the GitLab agent's schema that Verdict accepts but does not act on.
 * It is reported once, as a warning at the key, and checked with the rules of
 * the original (its problems are warnings too); its value is not passed on.
 */

export function unused(v: Validator<unknown>, why: string): Validator<undefined> & { wantsNull: true } {
  const out = ((node, path, ctx, key) => {
    ctx.warnings.push(issueAt(ctx, key ?? node, path, `not used by Verdict (${why}); accepted and ignored`));
    if (ctx.unusedRoot === undefined) ctx.ignored?.push(path);
    // Nested unused keys keep the outermost name: that is the one the warning above named.
    const inner: ConfigCtx = ctx.unusedRoot === undefined ? { ...ctx, unusedRoot: path } : ctx;
    if (!isNull(node)) v(node, path, inner, key);
    return undefined;
  }) as Validator<undefined> & { wantsNull: true };
  out.wantsNull = true;
  UNUSED.add(out);
  return out;
}

/**
 * A protobuf oneof as the GitLab agent's schema has them (`access_as`, `ref`):
 * a mapping with exactly one of its keys set. A key without a value (`agent:`)
 * counts as unset, as it did for the original.
 */
export function exactlyOne<S extends Shape>(shape: S, example: string): Validator<Out<S>> {
  const inner = obj(shape, { example });
  return (node, path, ctx, key) => {
    const names = Object.keys(shape);
    if (isMap(node)) {
      // In file order, so the second one set is the line to delete.
      const given = node.items.filter((p) => isScalar(p.key) && names.includes(String(p.key.value)));
      const set = given.filter((p) => !isNull(p.value as Node));
      const empty = given.filter((p) => isNull(p.value as Node)).map((p) => String((p.key as Node & { value: unknown }).value));
      if (set.length > 1) {
        const found = set.map((p) => String((p.key as Node & { value: unknown }).value));
        return reportIssue(ctx, set[1]!.key as Node, path, `set only one of ${names.join(', ')}; found ${found.join(' and ')}`);
      }
      // A key of none of the forms is most likely one of them misspelt: the mapping's
      // unknown-key message names it and the form meant, where "none is set" would not.
      if (set.length === 0 && given.length < node.items.length) {
        inner(node, path, ctx, key);
        return undefined;
      }
      if (set.length === 0) {
        const why = empty.length ? `${empty[0]} has no value` : 'none is set';
        return reportIssue(ctx, key ?? node, path, `set exactly one of ${names.join(', ')} (${why}); e.g. ${example}`);
      }
    }
    return inner(node, path, ctx, key);
  };
}

export interface Parsed<T> {
  value: T;
  warnings: ConfigIssue[];
}

/** Parses YAML text and validates it; throws ConfigError listing every issue. */
export function parseYamlConfig<T>(text: string, file: string, root: Validator<T>): Parsed<T> {
  const lines = new LineCounter();
  // merge: `<<` keys as GitLab's Go YAML parser reads them, in YAML 1.2 files too.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  const ctx: ConfigCtx = { file, lines, issues: [], warnings: [], ignored: [] };
  for (const e of doc.errors) {
    ctx.issues.push({ file, path: '', line: lines.linePos(e.pos[0]).line, message: `invalid YAML: ${e.message.split('\n')[0]}` });
  }
  if (ctx.issues.length) throw new ConfigError(ctx.issues);
  const expanded = expandAliases(doc);
  ctx.via = expanded.via;
  ctx.aliased = expanded.aliased;
  if (expanded.fatal) throw new ConfigError([issueAt(ctx, expanded.fatal.node, expanded.fatal.path, expanded.fatal.message)]);
  const value = root(expanded.contents, '', ctx);
  // Merge keys are expanded before validation finds which sections are ignored; a problem in one is a warning there.
  for (const p of expanded.problems) {
    const ignored = ignoredRoot(ctx, p.path);
    if (ignored === undefined) ctx.issues.push(issueAt(ctx, p.node, p.path, p.message));
    else ctx.warnings.push(issueAt(ctx, p.node, p.path, ignoredProblem(p.message, ignored)));
  }
  // Validators visit keys in schema order; people read problems in file order.
  const byLine = (a: ConfigIssue, b: ConfigIssue) => a.line - b.line;
  if (ctx.issues.length || value === undefined) throw new ConfigError(ctx.issues.sort(byLine), ctx.warnings.sort(byLine));
  return { value, warnings: ctx.warnings.sort(byLine) };
}

/**
 * Validates a JSON value (an API request body) with the same validators as
 * the config files; throws ConfigError listing every issue. Issues name the
 * path alone: the body has no lines of its own to point at.
 */
export function parseJsonValue<T>(value: unknown, what: string, root: Validator<T>): T {
  const doc = new Document(value ?? null, { aliasDuplicateObjects: false });
  const ctx: ConfigCtx = { file: what, lines: new LineCounter(), issues: [], warnings: [], ignored: [] };
  const out = root(doc.contents as Node | null, '', ctx);
  if (ctx.issues.length || out === undefined) throw new ConfigError(ctx.issues, ctx.warnings);
  return out;
}

/** A validator with an extra check on its value (cross-field rules, formats). */
export function refine<T>(v: Validator<T>, check: (value: T) => string | undefined): Validator<T> {
  const out: Validator<T> = (node, path, ctx) => {
    const value = v(node, path, ctx);
    if (value === undefined) return undefined;
    const why = check(value);
    return why ? reportIssue(ctx, node, path, why) : value;
  };
  if (v.sensitive) out.sensitive = true;
  return out;
}
