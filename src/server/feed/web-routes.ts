import { routeSchema } from './schemas.js';
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// The web page: static files kept as source in src/server/feed/web/. The build
// compiles only TypeScript, so they are read from the source tree, which the
// same relative path reaches from src/server/feed (tests) and dist/server/feed.

export const WEB_DIR = fileURLToPath(new URL('../../../src/server/feed/web/', import.meta.url));

const FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
  '/favicon.svg': { file: 'favicon.svg', type: 'image/svg+xml' },
};

/**
 * Everything on the page comes from attackers in the end (pod names, Falco
 * output, URLs): the page renders it as text, and this policy makes sure no
 * script but app.js can run even if that ever slips.
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function registerWebRoutes(app: FastifyInstance): void {
  for (const [url, { file, type }] of Object.entries(FILES)) {
    let body: Buffer | undefined;
    try {
      body = readFileSync(`${WEB_DIR}${file}`);
    } catch {
      body = undefined;
    }
    app.get(url, { schema: routeSchema({ hide: true }) }, async (_req, reply) => {
      if (!body) return reply.code(503).type('text/plain; charset=utf-8').send(`The web page's files are missing from ${WEB_DIR}; the API under /api/v1 works without them.\n`);
      return reply
        .type(type)
        .header('content-security-policy', CSP)
        .header('x-frame-options', 'DENY')
        .header('referrer-policy', 'no-referrer')
        .header('cross-origin-opener-policy', 'same-origin')
        .header('cache-control', 'no-cache')
        .send(body);
    });
  }
}
