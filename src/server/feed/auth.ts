import type { FastifyReply, FastifyRequest } from 'fastify';
import { scopeAllows, type FeedScope, type FeedTokenInfo, type FeedTokens } from '../auth/feed-tokens.js';

/** The WebSocket subprotocol of the live stream; the server always answers with it. */
export const STREAM_PROTOCOL = 'verdict.v1';
/** Browsers cannot set headers on a WebSocket: the page offers `bearer.<token>` as a second subprotocol. */
export const BEARER_PROTOCOL_PREFIX = 'bearer.';

/**
 * The feed token of a request: the Authorization header (API clients), a
 * `bearer.<token>` WebSocket subprotocol (the web page; keeps the token out of
 * URLs and access logs), or ?access_token= (clients that can do neither).
 */
export function tokenFrom(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (m) return m[1];
  const protocols = req.headers['sec-websocket-protocol'];
  if (typeof protocols === 'string') {
    for (const p of protocols.split(',')) {
      const t = p.trim();
      if (t.startsWith(BEARER_PROTOCOL_PREFIX) && t.length > BEARER_PROTOCOL_PREFIX.length) return t.slice(BEARER_PROTOCOL_PREFIX.length);
    }
  }
  const q = (req.query as { access_token?: unknown } | undefined)?.access_token;
  return typeof q === 'string' && q ? q : undefined;
}

type WithToken = FastifyRequest & { feedToken?: FeedTokenInfo };

/** The token a request was authorized with (after requireScope). */
export function tokenOf(req: FastifyRequest): FeedTokenInfo | undefined {
  return (req as WithToken).feedToken;
}

/** Who did it, for the status history: the feed token's name and id. */
export function actorOf(req: FastifyRequest): string {
  const t = tokenOf(req);
  return t ? `${t.name} (feed token ${t.id})` : 'unknown';
}

/**
 * A hook that requires a feed token with at least the given scope. Use it as
 * onRequest, so that a caller without the right token learns that first (401,
 * 403), before anything about their query (400).
 */
function requireScope(tokens: FeedTokens, need: FeedScope) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const token = tokenFrom(req);
    if (!token) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: 'unauthorized', message: 'send a feed token as "Authorization: Bearer <token>"; create one with `verdict tokens create`' });
    }
    const info = tokens.verify(token);
    if (!info) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer error="invalid_token"')
        .send({ error: 'unauthorized', message: 'the feed token is unknown or revoked; create a new one with `verdict tokens create`' });
    }
    if (!scopeAllows(info.scope, need)) {
      return reply.code(403).send({
        error: 'forbidden',
        message: `this token has scope "${info.scope}"; this call needs "${need}": create one with \`verdict tokens create --scope ${need}\``,
      });
    }
    (req as WithToken).feedToken = info;
  };
}

/** What a route needs to require a scope: the hook, and the scope the OpenAPI document shows (openapi.ts). */
export interface ScopedRoute {
  onRequest: ReturnType<typeof requireScope>;
  config: { scope: FeedScope };
}

/** Route options (spread into them) requiring a feed token with at least `need`: the hook and the documented scope from one value, so the two cannot differ. */
export function scoped(tokens: FeedTokens, need: FeedScope): ScopedRoute {
  return { onRequest: requireScope(tokens, need), config: { scope: need } };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope the route's requireScope hook asks for, for the OpenAPI document (openapi.ts); set with scoped(). */
    scope?: FeedScope;
  }
}
