import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifySchemaCompiler } from 'fastify';
import { EXPECTED } from './schemas.js';

// Request validation, per part. Query strings and path parameters arrive as
// text, so their values are coerced to the schema's types (limit=10 is a
// number, a single status= is a list), as fastify does by default. JSON bodies
// carry their own types and are not coerced: fastify's default would take
// {"name": false} as the name "false", and the OpenAPI document, built from the
// same schemas, says that a string is needed there.
// Errors carry the value and the schema that refused it (verbose), so that the
// answer can quote the value and say what was expected in words (EXPECTED).

// A query string schema with additionalProperties: false refuses a parameter it does
// not name (fastify's default drops it: a misspelt filter, or ?limit= on a list that
// has none, would answer something else than was asked); ?access_token= is how the
// token may come (auth.ts), taken by every such route without each schema naming it.
// Bodies keep fastify's dropping; rejectUnknownFields (filters.ts) refuses their unknown fields.

const build = AjvCompiler();
const common = { verbose: true, keywords: [EXPECTED] };
const coercing = build({}, { customOptions: common });
const query = build({}, { customOptions: { ...common, removeAdditional: false } });
const exact = build({}, { customOptions: { ...common, coerceTypes: false } });

type Compile = Parameters<typeof exact>[0];

/** The schema with access_token among its properties where it refuses others. */
function withAccessToken(schema: unknown): unknown {
  const s = schema as { additionalProperties?: unknown; properties?: Record<string, unknown> };
  if (s?.additionalProperties !== false || s.properties?.access_token) return schema;
  return { ...s, properties: { ...s.properties, access_token: { type: 'string' } } };
}

export const validatorCompiler: FastifySchemaCompiler<unknown> = (route) =>
  (route.httpPart === 'body'
    ? exact(route as Compile)
    : route.httpPart === 'querystring'
      ? query({ ...route, schema: withAccessToken(route.schema) } as Compile)
      : coercing(route as Compile)) as ReturnType<FastifySchemaCompiler<unknown>>;
