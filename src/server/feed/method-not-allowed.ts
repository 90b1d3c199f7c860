import FindMyWay, { type HTTPMethod } from 'find-my-way';
import type { FastifyInstance, RouteOptions } from 'fastify';

// 405 Method Not Allowed, with the Allow header RFC 9110 asks for, for a path
// the server has routes for but not with this method. Fastify's router matches
// method and path together, so it answers 404 there, or routes the request to
// a parametric route of that method (PATCH /api/v1/alerts/counts reaches
// PATCH /api/v1/alerts/:id, whose schema then refuses "counts" as an id). The
// routes are mirrored into a find-my-way router, fastify's own, so paths match
// exactly as fastify matches them; a path names the resource of its static
// route if it has one, else of the parametric ones.

/** Call before any route is added; `maxParamLength` as given to Fastify. */
export function registerMethodNotAllowed(app: FastifyInstance, opts: { maxParamLength: number }): void {
  const paths = FindMyWay({ maxParamLength: opts.maxParamLength });
  const methods = new Set<HTTPMethod>();
  app.addHook('onRoute', (r: RouteOptions) => {
    for (const m of Array.isArray(r.method) ? r.method : [r.method]) {
      const method = m as HTTPMethod;
      if (paths.hasRoute(method, r.url)) continue;
      paths.on(method, r.url, () => undefined, { url: r.url });
      methods.add(method);
    }
  });

  // onRequest, before the body is read: a method that carries a body (QUERY,
  // PUT...) would otherwise be refused for its content type first.
  app.addHook('onRequest', async (req, reply) => {
    // A static route matched: the path is its resource, and the method is one it takes.
    if (!req.is404 && !req.routeOptions.url?.includes(':')) return;
    const path = req.url.split('?', 1)[0]!;
    const routes = new Map<HTTPMethod, string>();
    for (const m of methods) {
      const found = paths.find(m, path);
      if (found) routes.set(m, (found.store as { url: string }).url);
    }
    const urls = new Set(routes.values());
    const resource = urls.has(path) ? path : req.is404 ? [...urls][0] : req.routeOptions.url;
    if (resource === undefined || (!req.is404 && req.routeOptions.url === resource)) return;
    const allow = [...routes].filter(([, url]) => url === resource).map(([m]) => m);
    return reply
      .code(405)
      .header('allow', allow.join(', '))
      .send({ error: 'method_not_allowed', message: `${req.method} is not allowed on ${path}; it takes ${allow.join(', ')}` });
  });

  app.setNotFoundHandler(async (req, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?', 1)[0]!}; the API is described at /api/v1/openapi.json` }),
  );
}
