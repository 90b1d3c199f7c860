import { STATUS_CODES } from 'node:http';
import type { FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify';
import { ERROR_CODES, VerdictError } from '../../shared/errors.js';
import { clientErrorAnswerer, clientErrorStatus } from '../http-client-error.js';
import { EXPECTED, TIME_PATTERN } from './schemas.js';

// Every request the HTTP API refuses or fails is answered `{"error": <name>,
// "message": <what to do>}`: Verdict's own errors by the code table
// (shared/errors.ts), and fastify's and Node's refusals here, in the same
// form, since their codes (FST_ERR_*) and messages name no fix.

/** A value quoted in a message, cut short: it may be as long as the request. */
function quote(v: unknown): string {
  const s = typeof v === 'string' ? v : (JSON.stringify(v) ?? String(v));
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}

/** In a comma-separated list, the first value the list's pattern refuses on its own: the one to quote. */
function offending(value: unknown, pattern: string): unknown {
  if (typeof value !== 'string' || !pattern.includes('(?:,')) return value;
  const re = new RegExp(pattern, 'u');
  return value.split(',').find((v) => !re.test(v)) ?? value;
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'a whole number',
  object: 'a JSON object',
  array: 'a list',
  string: 'a string',
  boolean: 'true or false',
};

/** What was wrong with a request, in words a person can act on. */
export function describeValidation(errors: FastifySchemaValidationError[], where: string): string {
  return errors
    .map((e) => {
      const path =
        e.instancePath
          .replace(/^\//, '')
          .replace(/\/\d+$/, '')
          .replaceAll('/', '.') ||
        (e.params as { missingProperty?: string }).missingProperty ||
        where;
      const p = e.params as Record<string, unknown>;
      const data = (e as { data?: unknown }).data;
      switch (e.keyword) {
        case 'enum':
          return `${path}: ${quote(data)} is not one of ${(p.allowedValues as string[]).join(', ')}`;
        case 'required':
          return `${p.missingProperty as string}: is required`;
        case 'type':
          // A query parameter sent twice arrives as a list, which a one-value parameter is not.
          if (where === 'query' && Array.isArray(data) && p.type !== 'array') return `${path}: is given ${data.length} times; send it once`;
          return `${path}: must be ${TYPE_WORDS[String(p.type)] ?? `of type ${String(p.type)}`}`;
        case 'minimum':
          return `${path}: must be at least ${String(p.limit)}`;
        case 'maximum':
          return `${path}: must be at most ${String(p.limit)}`;
        case 'maxLength':
          return `${path}: must be at most ${String(p.limit)} characters`;
        case 'minLength':
          return `${path}: must not be empty`;
        case 'maxItems':
          return `${path}: at most ${String(p.limit)} values`;
        case 'additionalProperties': {
          if (where !== 'query') return `${where}: unknown field "${String(p.additionalProperty)}"`;
          const known = Object.keys((e as { parentSchema?: { properties?: object } }).parentSchema?.properties ?? {}).filter((k) => k !== 'access_token');
          return `unknown query parameter "${String(p.additionalProperty)}"; ${known.length ? `known: ${known.join(', ')}` : 'this route takes none'}`;
        }
        case 'pattern': {
          // Never the pattern itself: the schema's words for it, or where to read it.
          const s = ((e as { parentSchema?: Record<string, unknown> }).parentSchema ?? {}) as { [EXPECTED]?: string; description?: string };
          const value = quote(offending(data, String(p.pattern)));
          // A duration in the form the pattern takes, but too long ago to be a time.
          if (p.pattern === TIME_PATTERN && typeof data === 'string' && /^[0-9]{7,}[smhdw]$/.test(data)) {
            return `${path}: ${value} is out of range: a duration has at most 6 digits (999999${data.slice(-1)})`;
          }
          if (s[EXPECTED]) return `${path}: ${value} is not ${s[EXPECTED]}`;
          return `${path}: ${value} is not valid${s.description ? ` (${s.description})` : ''}; GET /api/v1/openapi.json gives the form it takes`;
        }
        default:
          return `${path}: ${e.message ?? 'is invalid'}`;
      }
    })
    .join('; ');
}

/** The `error` name of an HTTP status: the code table's where it has one, else the status's own name. */
function errorName(status: number): string {
  return (
    Object.values(ERROR_CODES).find((c) => c.http === status)?.api ??
    (STATUS_CODES[status] ?? 'error')
      .toLowerCase()
      .replace(/[^a-z]+/g, '_')
      .replace(/^_|_$/g, '')
  );
}

const bytes = (n: number) => (n % 1048576 === 0 ? `${n / 1048576} MiB` : `${n} bytes`);

type Refusal = { status: number; message: string };

/** Fastify's refusals of a request, by its code, in words that say what to send instead. */
const FRAMEWORK_REFUSALS: Record<string, (req: FastifyRequest) => Refusal> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: (req) => ({
    status: 415,
    message: `the body is ${req.headers['content-type'] ? `of type ${quote(req.headers['content-type'])}` : 'sent without a Content-Type'}; this API reads JSON bodies only: send the body as JSON with the header Content-Type: application/json`,
  }),
  // Also a "__proto__" or "constructor" key, which fastify's parser refuses so that no body can reach an object's prototype.
  FST_ERR_CTP_INVALID_JSON_BODY: () => ({
    status: 400,
    message: 'body: is not valid JSON, or has a "__proto__" or "constructor" key, which this API refuses; send a JSON object (Content-Type: application/json)',
  }),
  FST_ERR_CTP_BODY_TOO_LARGE: (req) => ({
    status: 413,
    message: `the body is over ${bytes(req.routeOptions.bodyLimit)}, the most this API reads (more than any request to it needs); send a smaller one`,
  }),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () => ({
    status: 400,
    message: 'the body is not as long as its Content-Length header says; send the exact length (or let the client set the header)',
  }),
  FST_ERR_BAD_URL: (req) => ({
    status: 400,
    message: `the path ${quote(req.url.split('?', 1)[0])} is not valid percent-encoding; a "%" must be followed by two hex digits (send "%" itself as %25)`,
  }),
};

/**
 * The answer to an error a route threw, or fastify raised for the request: `{error, message}` with its status.
 * Verdict's own errors carry their status in the one code table; fastify's are put in words here; anything
 * else of status 5xx is a bug or a failure the caller cannot fix.
 */
export function httpErrorHandler(
  err: Error & { statusCode?: number; validation?: unknown; code?: string },
  req: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (err instanceof VerdictError) {
    if (err.httpStatus >= 500) req.log.error({ error: err.message, url: req.url, code: err.code }, 'Request failed');
    return reply.code(err.httpStatus).send({ error: ERROR_CODES[err.code].api, message: err.message, ...err.details });
  }
  const refusal = err.validation ? undefined : FRAMEWORK_REFUSALS[err.code ?? '']?.(req);
  const status = refusal?.status ?? (typeof err.statusCode === 'number' ? err.statusCode : 500);
  if (status >= 500) {
    req.log.error({ error: err.message, url: req.url }, 'Request failed');
    return reply.code(status).send({ error: 'internal', message: 'the server failed to answer; the server log has the error' });
  }
  return reply.code(status).send({ error: errorName(status), message: refusal?.message ?? err.message });
}

/**
 * Node's refusals of what is not an HTTP request it will read (fastify's clientErrorHandler): answered on
 * the socket in the same form, then closed (http-client-error.ts). `maxHeaderSize` as given to the server.
 */
export function clientErrorHandler(maxHeaderSize: number) {
  return clientErrorAnswerer((err) => {
    const status = clientErrorStatus(err);
    const message =
      status === 431
        ? `the request line and headers are over ${maxHeaderSize / 1024} KiB, the most this server reads; send fewer or shorter filters`
        : status === 408
          ? 'the request did not arrive in time; send it again'
          : `the request is not valid HTTP/1.1 (${err.code ?? err.message}); check the client, or a proxy in between, and its Content-Length`;
    return { status, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ error: errorName(status), message }) };
  });
}
