import swagger from '@fastify/swagger';
import type { FastifyInstance, FastifySchema, RouteOptions } from 'fastify';
import { VERSION } from '../../shared/version.js';
import { routeSchema } from './schemas.js';

// /api/v1/openapi.json, built by @fastify/swagger from the JSON schemas the
// routes validate with, so the document cannot drift from what the server
// accepts. What swagger cannot know from a schema is added here: the scope a
// route needs (its `config.scope`), the stream's message format, and a
// description for each status code.

export const OPENAPI_URL = '/api/v1/openapi.json';

const STREAM_DOC = `WebSocket (subprotocol \`verdict.v1\`). Authenticate with an Authorization header, or,
from a browser, by offering a second subprotocol \`bearer.<feed token>\` (the server answers with
\`verdict.v1\` only); an upgrade that offers subprotocols but not \`verdict.v1\` is refused with 400, one that offers none is upgraded without one. Takes the same filters as GET /api/v1/alerts, and \`cursor\`. Messages are JSON
text frames, each with the cursor to resume from:

- \`{"type":"alerts","cursor":N,"alerts":[alert...],"removed":[id...]}\`: alerts that changed and match
  the filters, in change order; \`removed\`: alerts that changed and no longer match the status,
  severity or until filters.
- \`{"type":"live","cursor":N}\`: every change up to N has been sent; what follows is live.

Reconnect with \`?cursor=<last cursor received>\` to get every change after it exactly once (the latest
state of each changed alert), then live ones. Without a cursor the stream starts at the present;
load the list first and pass its \`stream_cursor\` to miss nothing in between.

A plain HTTP request (no WebSocket upgrade) that passes the token and query checks is answered 426.`;

const RESPONSE_DOC: Record<string, string> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No content',
  400: 'The request is invalid; the message says what to change',
  401: 'No feed token, or an unknown or revoked one',
  403: 'The token lacks the scope this call needs',
  404: 'Not found',
  409: 'Conflicts with the current state',
  426: 'Not a WebSocket request',
  503: 'Not available now; the message says why and when to try again',
};

type Schema = FastifySchema & { hide?: boolean; description?: string; querystring?: { properties?: Record<string, unknown> } };

/** What a route adds to its schema in the document: scope, status descriptions; hidden unless under /api/. */
function transform({ schema, url, route }: { schema: Schema; url: string; route: RouteOptions }): { schema: Schema; url: string } {
  if (!schema || schema.hide || !url.startsWith('/api/')) return { schema: { ...schema, hide: true }, url };
  const scope = route.config?.scope;
  const out: Schema & Record<string, unknown> = { ...schema };
  if (url.endsWith('/alerts/stream')) out.description = STREAM_DOC;
  if (scope) {
    // Either scheme; the query one is what ?access_token= is (tokenFrom in auth.ts).
    out.security = [{ feedToken: [] }, { feedTokenQuery: [] }];
    out['x-required-scope'] = scope;
    out.description = `${out.description ? `${out.description}\n\n` : ''}Needs a feed token with scope "${scope}" or above.`;
  }
  if (schema.response) {
    out.response = Object.fromEntries(
      Object.entries(schema.response as Record<string, object>).map(([code, s]) => [
        code,
        { ...s, 'x-response-description': RESPONSE_DOC[code] ?? 'Response' },
      ]),
    );
  }
  return { schema: out, url };
}

type Document = { paths?: Record<string, Record<string, { requestBody?: { required?: boolean; content?: Record<string, { schema?: { type?: unknown } }> } }>> };

/**
 * swagger marks every request body required; a body schema that admits null
 * (POST /api/v1/admin/agents/{agent}/tokens) means the body may be left out.
 */
function optionalBodies(doc: Document): Document {
  for (const ops of Object.values(doc.paths ?? {})) {
    for (const op of Object.values(ops)) {
      const type = op.requestBody?.content?.['application/json']?.schema?.type;
      if (Array.isArray(type) && type.includes('null')) op.requestBody!.required = false;
    }
  }
  return doc;
}

/** Registers the document's builder (before any route) and its route. */
export async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Verdict alert feed',
        version: VERSION,
        description:
          "Security alerts from Cilium/Hubble drops and Falco rule hits, de-duplicated by fingerprint, with GitLab's statuses. Feed tokens: `verdict tokens create --name <who> --scope read|write|admin`.",
      },
      components: {
        securitySchemes: {
          feedToken: { type: 'http', scheme: 'bearer', description: 'A feed token (vdt_feed_...). Scopes: read < write < admin.' },
          // Declared as a scheme, swagger leaves access_token out of each route's parameters.
          feedTokenQuery: {
            type: 'apiKey',
            in: 'query',
            name: 'access_token',
            description:
              'The feed token in the URL, for clients that can send no Authorization header. It ends up in URLs and logs: prefer the header (browsers, on the live stream: the bearer.<token> subprotocol).',
          },
        },
      },
    },
    transform: transform as never,
    transformObject: (d) => optionalBodies((d as { openapiObject: Document }).openapiObject) as never,
  });
  app.get(
    OPENAPI_URL,
    {
      schema: routeSchema({ hide: true, response: { 200: { type: 'object', additionalProperties: true } } }),
    },
    async () => app.swagger(),
  );
}
