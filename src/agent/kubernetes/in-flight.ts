import type { ClientRequest } from 'node:http';

/**
 * The requests a client has sent to the API server and not yet seen close, so
 * that its close() can end them all: the connections are the agent's shared
 * pool (pool.ts), which cannot be closed for one module. A request leaves at
 * its 'close': when its response has been read, when it fails, or at an
 * upgrade's 101.
 */
export class InFlight {
  private readonly reqs = new Set<ClientRequest>();

  /** Keeps req until it closes; returns it. */
  add(req: ClientRequest): ClientRequest {
    this.reqs.add(req);
    req.once('close', () => this.reqs.delete(req));
    return req;
  }

  /** Ends every request still open, with err as their 'error' when given. */
  destroyAll(err?: Error): void {
    for (const req of this.reqs) req.destroy(err);
  }

  get size(): number {
    return this.reqs.size;
  }
}
