import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';

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

/**
 * Joins a connection to the loopback listener, paused until now, to its way to
 * the server: bytes flow both ways unchanged, and either end closing or failing
 * closes the other, so grpc-js sees the server go as it would on a direct dial.
 */
export function splice(local: Socket, remote: Duplex): void {
  remote.on('error', () => local.destroy());
  remote.on('close', () => local.destroy());
  local.on('close', () => remote.destroy());
  local.pipe(remote);
  remote.pipe(local);
  local.resume();
}
