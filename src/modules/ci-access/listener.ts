import { createServer as createHttp, type IncomingMessage, type Server, maxHeaderSize, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { Socket } from 'node:net';
import { clientErrorAnswerer, clientErrorStatus as statusOfClientError } from '../../server/http-client-error.js';
import type { TlsMaterial } from '../../server/tunnel/tls.js';
import { splitHostPort } from '../../shared/config/host-port.js';
import { listenError } from '../../shared/config/listen-error.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { KubernetesApiProxy } from './proxy.js';
import { STATUS_HEADERS, statusBody } from './status.js';

// The listener kubectl talks to (the original KAS's :8154). HTTPS when the
// server has TLS. Node's request timeout is off: a watch or an exec session
// lasts as long as its client wants, and the original's users' top complaint
// was long watches cut by proxies. Only the request's headers must arrive
// within 60 s (headersTimeout), so a client that never sends them does not
// hold a socket.

export interface ProxyListener {
  /** host:port bound */
  address: string;
  close(): Promise<void>;
}

export async function listenProxy(addr: string, proxy: KubernetesApiProxy, tls: TlsMaterial | undefined, log: Logger): Promise<ProxyListener> {
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    proxy.handle(req, res).catch((e: unknown) => {
      log.error({ error: errText(e) }, 'CI tunnel: request failed');
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  };
  const opts = { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 65_000 };
  const server: Server = tls ? createHttps({ ...opts, cert: tls.cert, key: tls.key }, onRequest) : createHttp(opts, onRequest);
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    proxy.upgrade(req, socket, head).catch((e: unknown) => {
      log.error({ error: errText(e) }, 'CI tunnel: upgrade failed');
      socket.destroy();
    });
  });
  server.on('clientError', clientErrorStatus(maxHeaderSize));
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  const { host, port } = splitHostPort(addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError('for the Kubernetes API proxy', addr, e, 'kubernetes_api.listen')));
    server.listen(port, host, resolve);
  });
  const a = server.address();
  const address = typeof a === 'object' && a ? `${addr.replace(/:\d+$/, '')}:${a.port}` : addr;
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        // Open watches and exec sessions would hold close() forever.
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * A request Node refuses before the proxy sees it, answered with a Status as the proxy's own refusals are:
 * kubectl prints its message, where a closed socket leaves it a bare EOF (http-client-error.ts writes it).
 */
function clientErrorStatus(headerLimit: number) {
  return clientErrorAnswerer((err) => {
    const code = statusOfClientError(err);
    const message =
      code === 431
        ? `the request line and headers are over ${headerLimit / 1024} KiB, the most this listener reads; send fewer or shorter headers`
        : code === 408
          ? 'the request headers did not arrive within 60 s; send the request again'
          : `the request is not valid HTTP/1.1 (${err.code ?? err.message}); check the client, or a proxy in between`;
    // status.ts names a reason for the statuses the proxy answers; these are all the client's to fix.
    const body = JSON.stringify({ ...(JSON.parse(statusBody(code, 'server', message)) as object), reason: code === 408 ? 'Timeout' : 'BadRequest' });
    return { status: code, headers: { ...STATUS_HEADERS }, body };
  });
}
