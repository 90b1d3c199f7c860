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

const build = AjvCompiler();
const common = { verbose: true, keywords: [EXPECTED] };
const coercing = build({}, { customOptions: common });
const exact = build({}, { customOptions: { ...common, coerceTypes: false } });

export const validatorCompiler: FastifySchemaCompiler<unknown> = (route) =>
  (route.httpPart === 'body' ? exact : coercing)(route as Parameters<typeof exact>[0]) as ReturnType<FastifySchemaCompiler<unknown>>;
