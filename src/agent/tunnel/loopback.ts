import type { Server } from 'node:net';

/**
 * Starts a listener on a free loopback port. grpc-js has no custom dialer, so
 * the agent points its channel at such a listener and forwards each connection
 * (through a WebSocket, or to whichever server address answers).
 */
export async function listenLoopback(server: Server): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** host:port of a loopback listener, the gRPC channel's target. */
export function loopbackTarget(server: Server, what: string): string {
  const a = server.address();
  if (typeof a !== 'object' || !a) throw new Error(`${what} is not listening`);
  return `127.0.0.1:${a.port}`;
}
