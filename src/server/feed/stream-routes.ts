import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { AlertStore } from '../store/alert-store.js';
import { BEARER_PROTOCOL_PREFIX, STREAM_PROTOCOL, scoped, tokenOf } from './auth.js';
import { filterFrom, type FilterQuery } from './filters.js';
import { errors, streamQuerySchema, routeSchema } from './schemas.js';
import type { StreamHub } from './stream.js';

const isUpgrade = (h: IncomingHttpHeaders) => String(h.upgrade ?? '').toLowerCase() === 'websocket';

/** The subprotocols a WebSocket client offered, in its order. */
const offered = (h: IncomingHttpHeaders): string[] =>
  (h['sec-websocket-protocol'] ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);

/**
 * Refused before the upgrade rather than upgraded without a protocol the client
 * offered: its WebSocket library would then fail with a bare "invalid
 * subprotocol" or 1006, saying nothing of what to change. Never echoes a token.
 * A client that offers none (websocat -H, wscat -H, Python websockets with a
 * header) expects none back, and is upgraded: its token came in the
 * Authorization header or ?access_token= (requireScope ran first).
 */
function subprotocolMissing(protocols: string[]): string {
  const shown = protocols.map((p) =>
    p.startsWith(BEARER_PROTOCOL_PREFIX) ? `${BEARER_PROTOCOL_PREFIX}<token>` : JSON.stringify(p).slice(1, -1).slice(0, 100),
  );
  return `the live stream needs the WebSocket subprotocol ${STREAM_PROTOCOL}: offer it, and ${BEARER_PROTOCOL_PREFIX}<token> as a second one if the client cannot send an Authorization header (e.g. new WebSocket(url, ["${STREAM_PROTOCOL}", "${BEARER_PROTOCOL_PREFIX}<token>"])), or offer none and send the token as "Authorization: Bearer <token>"; offered: ${shown.join(', ')}`;
}

export function registerStreamRoute(app: FastifyInstance, deps: { store: AlertStore; tokens: FeedTokens; hub: StreamHub }): void {
  app.route({
    method: 'GET',
    url: '/api/v1/alerts/stream',
    ...scoped(deps.tokens, 'read'),
    schema: routeSchema({
      summary: 'Live stream of alert changes (WebSocket)',
      querystring: streamQuerySchema,
      response: { ...errors(400, 401, 403, 409, 426) },
    }),
    // Checked before the upgrade, so a cursor from another store is an HTTP answer
    // the client can read: 409, as the cursor is well-formed but does not fit the
    // store as it is now.
    preHandler: async (req, reply) => {
      const protocols = offered(req.headers);
      if (isUpgrade(req.headers) && protocols.length > 0 && !protocols.includes(STREAM_PROTOCOL)) {
        return reply.code(400).send({ error: 'bad_request', message: subprotocolMissing(protocols) });
      }
      const { cursor } = req.query as { cursor?: number };
      const now = deps.store.currentSeq();
      if (cursor !== undefined && cursor > now) {
        return reply.code(409).send({
          error: 'conflict',
          message: `cursor ${cursor} is ahead of the newest change (${now}): the store was reset; load the list again and stream from its stream_cursor`,
        });
      }
      filterFrom(req.query as FilterQuery, deps.store);
    },
    handler: async (_req, reply) =>
      reply
        .code(426)
        .header('upgrade', 'websocket')
        .send({ error: 'upgrade_required', message: 'this is a WebSocket endpoint: connect with a WebSocket client (subprotocol verdict.v1)' }),
    wsHandler: (socket, req) => {
      const q = req.query as FilterQuery & { cursor?: number };
      deps.hub.add(socket, filterFrom(q, deps.store), q.cursor, tokenOf(req)!.id);
    },
  });
}
