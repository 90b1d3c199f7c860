// A small JSON Schema (draft 2020-12) validator for the keywords
// alerts/alert.schema.json uses, so tests can check payloads against the
// documented schema without another dependency. It refuses keywords it does not
// implement rather than silently passing them.

type Schema = Record<string, unknown> | boolean;

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', '$defs', 'examples', '$comment']);
const KEYWORDS = new Set([
  'type',
  'const',
  'enum',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'minItems',
  'maxItems',
  'minLength',
  'pattern',
  'minimum',
  'maximum',
  '$ref',
]);

function typeOk(t: string, v: unknown): boolean {
  switch (t) {
    case 'object':
      return typeof v === 'object' && v !== null && !Array.isArray(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'integer':
      return typeof v === 'number' && Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'null':
      return v === null;
    default:
      throw new Error(`unsupported type ${t}`);
  }
}

function resolveRef(root: Record<string, unknown>, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local $ref is supported, got ${ref}`);
  let cur: unknown = root;
  for (const part of ref.slice(2).split('/')) cur = (cur as Record<string, unknown>)[part];
  if (cur === undefined) throw new Error(`unresolved $ref ${ref}`);
  return cur as Schema;
}

/** Returns the list of violations (empty when valid), each with a JSON pointer. */
export function validate(root: Record<string, unknown>, value: unknown): string[] {
  const errors: string[] = [];
  const walk = (s: Schema, v: unknown, at: string): void => {
    if (s === true) return;
    if (s === false) {
      errors.push(`${at}: not allowed`);
      return;
    }
    for (const k of Object.keys(s)) {
      if (!KEYWORDS.has(k) && !ANNOTATIONS.has(k)) throw new Error(`unsupported keyword ${k} at ${at}`);
    }
    if (typeof s.$ref === 'string') walk(resolveRef(root, s.$ref), v, at);
    if (s.type !== undefined) {
      const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
      if (!types.some((t) => typeOk(t, v))) {
        errors.push(`${at}: expected ${types.join('|')}, got ${JSON.stringify(v)?.slice(0, 60)}`);
        return;
      }
    }
    if ('const' in s && JSON.stringify(s.const) !== JSON.stringify(v)) errors.push(`${at}: must be ${JSON.stringify(s.const)}`);
    if (Array.isArray(s.enum) && !s.enum.some((e) => JSON.stringify(e) === JSON.stringify(v)))
      errors.push(`${at}: ${JSON.stringify(v)} not in ${JSON.stringify(s.enum)}`);
    if (typeof v === 'string') {
      if (typeof s.minLength === 'number' && [...v].length < s.minLength) errors.push(`${at}: shorter than ${s.minLength}`);
      if (typeof s.pattern === 'string' && !new RegExp(s.pattern, 'u').test(v)) errors.push(`${at}: ${JSON.stringify(v)} does not match ${s.pattern}`);
    }
    if (typeof v === 'number') {
      if (typeof s.minimum === 'number' && v < s.minimum) errors.push(`${at}: below ${s.minimum}`);
      if (typeof s.maximum === 'number' && v > s.maximum) errors.push(`${at}: above ${s.maximum}`);
    }
    if (Array.isArray(v)) {
      if (typeof s.minItems === 'number' && v.length < s.minItems) errors.push(`${at}: fewer than ${s.minItems} items`);
      if (typeof s.maxItems === 'number' && v.length > s.maxItems) errors.push(`${at}: more than ${s.maxItems} items`);
      if (s.items !== undefined) {
        for (const [i, x] of v.entries()) walk(s.items as Schema, x, `${at}/${i}`);
      }
    }
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      for (const r of (s.required as string[] | undefined) ?? []) if (!(r in o)) errors.push(`${at}: missing ${r}`);
      const props = (s.properties as Record<string, Schema> | undefined) ?? {};
      for (const [k, x] of Object.entries(o)) {
        if (x === undefined) continue; // absent once serialised
        if (k in props) walk(props[k]!, x, `${at}/${k}`);
        else if (s.additionalProperties !== undefined) walk(s.additionalProperties as Schema, x, `${at}/${k}`);
      }
    }
  };
  walk(root, value, '');
  return errors;
}
