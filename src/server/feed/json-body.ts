import type { FastifyInstance } from 'fastify';

// JSON request bodies, read by fastify's own parser (with its refusal of
// __proto__ and constructor keys), except that an empty body is no body:
// clients that always send Content-Type: application/json (curl -H, HTTP
// libraries' defaults) send it on requests that take no body, or an optional
// one, too. Where a route needs a body, its schema refuses the missing one
// ("body: must be a JSON object").

export function registerJsonBodies(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if ((body as string).trim() === '') return done(null, undefined);
    parse(req, body as string, done);
  });
}
