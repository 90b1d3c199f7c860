import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { Socket } from 'node:net';
import type { TlsMaterial } from '../../server/tunnel/tls.js';
import { splitHostPort } from '../../shared/config/host-port.js';
import { listenError } from '../../shared/config/listen-error.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { KubernetesApiProxy } from './proxy.js';

// The listener kubectl talks to (the original KAS's :8154). HTTPS when the
// server has TLS. Node's request and header timeouts are off: a watch or an
// exec session lasts as long as its client wants, and the original's users'
// top complaint was long watches cut by proxies.

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
  server.on('clientError', (_e, socket) => socket.destroy());
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
