import type { FastifyInstance } from 'fastify';
import type { FeedScope, FeedTokens } from '../auth/feed-tokens.js';
import { FEED_SCOPES } from '../auth/feed-tokens.js';
import { actorOf, scoped } from './auth.js';
import { rejectUnknownFields } from './filters.js';
import { errors, idParams, noQuerySchema, tokenInfoSchema, routeSchema } from './schemas.js';

/** Feed tokens managed over HTTP by holders of an admin token (the CLI does the same locally). */
export function registerFeedTokenAdminRoutes(app: FastifyInstance, deps: { tokens: FeedTokens }): void {
  const admin = scoped(deps.tokens, 'admin');

  app.post(
    '/api/v1/admin/feed-tokens',
    {
      ...admin,
      preValidation: rejectUnknownFields(['name', 'scope']),
      schema: routeSchema({
        summary: 'Create a feed token',
        description: 'The token is in this response only; the server keeps its hash.',
        body: {
          type: 'object',
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 100, description: 'who or what will use it' },
            scope: {
              type: 'string',
              enum: FEED_SCOPES,
              default: 'read',
              description: 'read: list and stream; write: also change status; admin: also manage tokens',
            },
          },
          required: ['name'],
          additionalProperties: false,
        },
        response: {
          201: { type: 'object', properties: { ...tokenInfoSchema.properties, token: { type: 'string' } } },
          ...errors(400, 401, 403),
        },
      }),
    },
    async (req, reply) => {
      const { name, scope } = req.body as { name: string; scope: FeedScope };
      const { token, info } = deps.tokens.create(name, scope);
      req.log.info({ token_id: info.id, token_name: name, scope, by: actorOf(req) }, 'Feed token created');
      return reply.code(201).send({ ...info, created_at: new Date().toISOString(), revoked_at: null, token });
    },
  );

  app.get(
    '/api/v1/admin/feed-tokens',
    {
      ...admin,
      schema: routeSchema({
        summary: 'List feed tokens',
        querystring: noQuerySchema,
        response: { 200: { type: 'object', properties: { tokens: { type: 'array', items: tokenInfoSchema } } }, ...errors(401, 403) },
      }),
    },
    async () => ({ tokens: deps.tokens.list() }),
  );

  app.delete(
    '/api/v1/admin/feed-tokens/:id',
    {
      ...admin,
      schema: routeSchema({
        summary: 'Revoke a feed token',
        description: 'Requests with it fail from now on, and its live streams close within a minute.',
        params: idParams,
        response: { 204: { type: 'null' }, ...errors(400, 401, 403, 404) },
      }),
    },
    async (req, reply) => {
      const { id } = req.params as { id: number };
      if (!deps.tokens.revoke(id))
        return reply.code(404).send({ error: 'not_found', message: `no active feed token with id ${id}; list them with GET /api/v1/admin/feed-tokens` });
      req.log.info({ token_id: id, by: actorOf(req) }, 'Feed token revoked');
      return reply.code(204).send();
    },
  );
}
