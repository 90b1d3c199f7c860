import { routeSchema } from './schemas.js';
import type { FastifyInstance, RouteOptions } from 'fastify';
import { VERSION } from '../../shared/version.js';

// /api/v1/openapi.json, built from the JSON schemas the routes validate with, so
// the document cannot drift from what the server accepts.

interface Collected {
  method: string;
  url: string;
  schema: Record<string, any>;
  scope?: string;
}

const STREAM_DOC = `WebSocket (subprotocol \`verdict.v1\`). Authenticate with an Authorization header, or,
from a browser, by offering a second subprotocol \`bearer.<feed token>\` (the server answers with
\`verdict.v1\` only). Takes the same filters as GET /api/v1/alerts, and \`cursor\`. Messages are JSON
text frames, each with the cursor to resume from:

- \`{"type":"alerts","cursor":N,"alerts":[alert...],"removed":[id...]}\`: alerts that changed and match
  the filters, in change order; \`removed\`: alerts that changed and no longer match the status,
  severity or until filters.
- \`{"type":"live","cursor":N}\`: every change up to N has been sent; what follows is live.

Reconnect with \`?cursor=<last cursor received>\` to get every change after it exactly once (the latest
state of each changed alert), then live ones. Without a cursor the stream starts at the present;
load the list first and pass its \`stream_cursor\` to miss nothing in between.`;

function toPath(url: string): string {
  return url.replace(/:([A-Za-z_]\w*)/g, '{$1}');
}

function parameters(schema: Record<string, any>): unknown[] {
  const out: unknown[] = [];
  for (const [where, s] of [['path', schema.params], ['query', schema.querystring]] as const) {
    if (!s?.properties) continue;
    for (const [name, p] of Object.entries(s.properties as Record<string, any>)) {
      if (name === 'access_token') continue;
      const { description, ...rest } = p as { description?: string };
      out.push({
        name,
        in: where,
        required: where === 'path' || (s.required as string[] | undefined)?.includes(name) || false,
        ...(description ? { description } : {}),
        schema: rest,
        ...((rest as { type?: string }).type === 'array' ? { style: 'form', explode: true } : {}),
      });
    }
  }
  return out;
}

function responses(schema: Record<string, any>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [code, s] of Object.entries((schema.response ?? {}) as Record<string, any>)) {
    const description = { 200: 'OK', 201: 'Created', 204: 'No content', 400: 'The request is invalid; the message says what to change', 401: 'No feed token, or an unknown or revoked one', 403: 'The token lacks the scope this call needs', 404: 'Not found', 409: 'Conflicts with the current state', 426: 'Not a WebSocket request', 503: 'Not available now; the message says why and when to try again' }[code] ?? 'Response';
    out[code] = code === '204' ? { description } : { description, content: { 'application/json': { schema: s } } };
  }
  return out;
}

export function registerOpenApi(app: FastifyInstance): void {
  const routes: Collected[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = (Array.isArray(r.method) ? r.method : [r.method]).filter((m) => m !== 'HEAD');
    const schema = r.schema as Record<string, any> | undefined;
    if (!schema || schema.hide || !r.url.startsWith('/api/')) return;
    for (const method of methods) routes.push({ method: method.toLowerCase(), url: r.url, schema, scope: (r.config as { scope?: string } | undefined)?.scope });
  });

  let doc: unknown;
  app.get('/api/v1/openapi.json', {
    schema: routeSchema({ hide: true, response: { 200: { type: 'object', additionalProperties: true } } }),
  }, async () => {
    doc ??= build(routes);
    return doc;
  });
}

function build(routes: Collected[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const s = r.schema;
    const op: Record<string, unknown> = {
      summary: s.summary,
      ...(s.description || r.url.endsWith('/stream') ? { description: r.url.endsWith('/stream') ? STREAM_DOC : s.description } : {}),
      parameters: parameters(s),
      responses: responses(s),
    };
    if (s.body) op.requestBody = { required: true, content: { 'application/json': { schema: s.body } } };
    if (r.scope) {
      op.security = [{ feedToken: [] }];
      op['x-required-scope'] = r.scope;
      op.description = `${op.description ? `${String(op.description)}\n\n` : ''}Needs a feed token with scope "${r.scope}" or above.`;
    }
    (paths[toPath(r.url)] ??= {})[r.method] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Verdict alert feed',
      version: VERSION,
      description: 'Security alerts from Cilium/Hubble drops and Falco rule hits, de-duplicated by fingerprint, with GitLab\'s statuses. Feed tokens: `verdict tokens create --name <who> --scope read|write|admin`.',
    },
    components: {
      securitySchemes: {
        feedToken: { type: 'http', scheme: 'bearer', description: 'A feed token (vdt_feed_...). Scopes: read < write < admin.' },
      },
    },
    paths,
  };
}
