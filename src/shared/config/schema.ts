import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';

// A small validator for YAML configuration that reports every problem with the
// file, the path inside the document and the line, because "invalid config"
// without a location is the support question operators of the original asked most.

export interface ConfigIssue {
  file: string;
  path: string; // e.g. cilium.hubble_relay_address
  line: number; // 1-based, 0 when unknown
  message: string;
}

export class ConfigError extends Error {
  readonly code = 'VERDICT_CONFIG_INVALID';
  constructor(readonly issues: ConfigIssue[]) {
    super(issues.map(formatIssue).join('; '));
    this.name = 'ConfigError';
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
}

export type Validator<T> = (node: Node | null | undefined, path: string, ctx: ConfigCtx) => T | undefined;

function lineOf(node: Node | null | undefined, ctx: ConfigCtx): number {
  const start = node?.range?.[0];
  return start === undefined ? 0 : ctx.lines.linePos(start).line;
}

/** Records a problem at a node; returns undefined so validators can `return reportIssue(...)`. */
export function reportIssue(ctx: ConfigCtx, node: Node | null | undefined, path: string, message: string): undefined {
  ctx.issues.push({ file: ctx.file, path, line: lineOf(node, ctx), message });
  return undefined;
}

function scalarValue(node: Node | null | undefined): unknown {
  return isScalar(node) ? node.value : undefined;
}

export const str = (opts: { pattern?: RegExp; hint?: string; nonEmpty?: boolean } = {}): Validator<string> =>
  (node, path, ctx) => {
    const v = scalarValue(node);
    if (typeof v !== 'string') return reportIssue(ctx, node, path, `must be a string${opts.hint ? ` (${opts.hint})` : ''}`);
    if (opts.nonEmpty && v.trim() === '') return reportIssue(ctx, node, path, 'must not be empty');
    if (opts.pattern && !opts.pattern.test(v)) return reportIssue(ctx, node, path, `"${v}" is not valid${opts.hint ? `: ${opts.hint}` : ''}`);
    return v;
  };

export const bool = (): Validator<boolean> => (node, path, ctx) => {
  const v = scalarValue(node);
  if (typeof v !== 'boolean') return reportIssue(ctx, node, path, 'must be true or false');
  return v;
};

export const int = (opts: { min?: number; max?: number } = {}): Validator<number> => (node, path, ctx) => {
  const v = scalarValue(node);
  if (typeof v !== 'number' || !Number.isInteger(v)) return reportIssue(ctx, node, path, 'must be a whole number');
  if (opts.min !== undefined && v < opts.min) return reportIssue(ctx, node, path, `must be at least ${opts.min}`);
  if (opts.max !== undefined && v > opts.max) return reportIssue(ctx, node, path, `must be at most ${opts.max}`);
  return v;
};

export const oneOf = <T extends string>(values: readonly T[]): Validator<T> => (node, path, ctx) => {
  const v = scalarValue(node);
  if (typeof v !== 'string' || !values.includes(v as T)) {
    return reportIssue(ctx, node, path, `must be one of ${values.join(', ')}, got ${JSON.stringify(v ?? null)}`);
  }
  return v as T;
};

/** Durations as "500ms", "10s", "5m", "1h"; returns milliseconds. */
export const duration = (opts: { min?: number; max?: number; maxWhy?: string } = {}): Validator<number> => (node, path, ctx) => {
  const v = scalarValue(node);
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim()) : null;
  if (!m) return reportIssue(ctx, node, path, `must be a duration such as 500ms, 10s, 5m or 1h, got ${JSON.stringify(v ?? null)}`);
  const ms = Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms']);
  if (opts.min !== undefined && ms < opts.min) return reportIssue(ctx, node, path, `must be at least ${opts.min} ms`);
  if (opts.max !== undefined && ms > opts.max) return reportIssue(ctx, node, path, `must be at most ${opts.max} ms${opts.maxWhy ? ` (${opts.maxWhy})` : ''}`);
  return ms;
};

export const list = <T>(item: Validator<T>, opts: { min?: number } = {}): Validator<T[]> => (node, path, ctx) => {
  if (!isSeq(node)) return reportIssue(ctx, node, path, 'must be a list');
  if (opts.min !== undefined && node.items.length < opts.min) return reportIssue(ctx, node, path, `must have at least ${opts.min} item(s)`);
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
      reportIssue(ctx, pair.value as Node, `${path}.${k}`, 'must be a string');
      continue;
    }
    out[k] = String(v);
  }
  return out;
};

// K records at the type level whether a value is always present (required or
// defaulted) or may be undefined.
type Field<T, K extends 'always' | 'maybe' = 'always' | 'maybe'> = { v: Validator<T>; required?: boolean; default?: T; readonly __k?: K };
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
 * case they are warnings (real configs carry sections newer agents added).
 */
export const obj = <S extends Shape>(shape: S, opts: { open?: boolean } = {}): Validator<Out<S>> => (node, path, ctx) => {
  if (node === null || node === undefined || (isScalar(node) && node.value === null)) {
    node = undefined;
  } else if (!isMap(node)) {
    return reportIssue(ctx, node, path, 'must be a mapping');
  }
  const seen = new Map<string, Node>();
  if (node) {
    for (const pair of node.items) {
      const k = String(scalarValue(pair.key as Node));
      seen.set(k, pair.value as Node);
      if (!(k in shape)) {
        const issue = { file: ctx.file, path: path ? `${path}.${k}` : k, line: lineOf(pair.key as Node, ctx), message: 'unknown key' };
        (opts.open ? ctx.warnings : ctx.issues).push(
          opts.open ? { ...issue, message: 'unknown section, ignored' } : { ...issue, message: `unknown key; known keys: ${Object.keys(shape).join(', ')}` },
        );
      }
    }
  }
  const out: Record<string, unknown> = {};
  const before = ctx.issues.length;
  for (const [k, f] of Object.entries(shape)) {
    const p = path ? `${path}.${k}` : k;
    const child = seen.get(k);
    if (child === undefined || (isScalar(child) && child.value === null)) {
      if (f.required) reportIssue(ctx, node, p, 'is required');
      else if ('default' in f) out[k] = structuredClone(f.default);
      continue;
    }
    out[k] = f.v(child, p, ctx);
  }
  return ctx.issues.length > before && !node ? undefined : (out as Out<S>);
};

export interface Parsed<T> {
  value: T;
  warnings: ConfigIssue[];
}

/** Parses YAML text and validates it; throws ConfigError listing every issue. */
export function parseYamlConfig<T>(text: string, file: string, root: Validator<T>): Parsed<T> {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const ctx: ConfigCtx = { file, lines, issues: [], warnings: [] };
  for (const e of doc.errors) {
    ctx.issues.push({ file, path: '', line: lines.linePos(e.pos[0]).line, message: `invalid YAML: ${e.message.split('\n')[0]}` });
  }
  if (ctx.issues.length) throw new ConfigError(ctx.issues);
  const value = root(doc.contents as Node | null, '', ctx);
  if (ctx.issues.length || value === undefined) throw new ConfigError(ctx.issues);
  return { value, warnings: ctx.warnings };
}

/** A validator with an extra check on its value (cross-field rules, formats). */
export function refine<T>(v: Validator<T>, check: (value: T) => string | undefined): Validator<T> {
  return (node, path, ctx) => {
    const out = v(node, path, ctx);
    if (out === undefined) return undefined;
    const why = check(out);
    return why ? reportIssue(ctx, node, path, why) : out;
  };
}
