import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifySchemaCompiler } from 'fastify';

// Request validation, per part. Query strings and path parameters arrive as
// text, so their values are coerced to the schema's types (limit=10 is a
// number, a single status= is a list), as fastify does by default. JSON bodies
// carry their own types and are not coerced: fastify's default would take
// {"name": false} as the name "false", and the OpenAPI document, built from the
// same schemas, says that a string is needed there.

const build = AjvCompiler();
const coercing = build({}, { customOptions: {} });
const exact = build({}, { customOptions: { coerceTypes: false } });

export const validatorCompiler: FastifySchemaCompiler<unknown> = (route) =>
  (route.httpPart === 'body' ? exact : coercing)(route as Parameters<typeof exact>[0]) as ReturnType<FastifySchemaCompiler<unknown>>;
