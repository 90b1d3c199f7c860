import type { FastifyReply, FastifyRequest } from 'fastify';
import { scopeAllows, type FeedScope, type FeedTokens } from '../auth/feed-tokens.js';

/** A preHandler that requires a feed token with at least the given scope. */
export function requireScope(tokens: FeedTokens, need: FeedScope) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const header = req.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    // Browsers cannot set headers on WebSocket upgrades; the page passes the token as a query parameter.
    const token = m?.[1] ?? (req.query as { access_token?: string } | undefined)?.access_token;
    if (!token) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: 'send a feed token as "Authorization: Bearer <token>"; create one with `verdict tokens create`' });
    }
    const info = tokens.verify(token);
    if (!info) {
      return reply.code(401).header('www-authenticate', 'Bearer error="invalid_token"').send({ error: 'unauthorized', message: 'the feed token is unknown or revoked' });
    }
    if (!scopeAllows(info.scope, need)) {
      return reply.code(403).send({ error: 'forbidden', message: `this token has scope "${info.scope}"; this call needs "${need}"` });
    }
    (req as FastifyRequest & { feedToken?: typeof info }).feedToken = info;
  };
}
