import { connect, createServer, type Server, type Socket } from 'node:net';

// A TCP relay between an agent and a server that tests can cut, hold down and
// point elsewhere, as a network failure or a load balancer moving the agent would.

export interface TcpRelay {
  port: number;
  /** Connections it holds now. */
  readonly open: number;
  /** Bytes it has passed from clients to the target (up) and back (down), over all connections. */
  readonly bytes: { up: number; down: number };
  /** Cuts the connections it holds; new ones pass, as after a network blip. */
  reset(): void;
  /** Cuts the connections it holds and refuses new ones until restore() or moveTo(). */
  cut(): void;
  restore(): void;
  /** Cuts the connections it holds; new ones go to `port`. */
  moveTo(port: number): void;
  close(): Promise<void>;
}

export async function startTcpRelay(to: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  let target = to;
  let down = false;
  const bytes = { up: 0, down: 0 };
  const server: Server = createServer((client: Socket) => {
    if (down) return client.destroy();
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    clients.add(client);
    client.pipe(upstream).pipe(client);
    client.on('data', (d: Buffer) => (bytes.up += d.length));
    upstream.on('data', (d: Buffer) => (bytes.down += d.length));
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
      clients.delete(client);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cutAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port: (server.address() as { port: number }).port,
    get open() {
      return clients.size;
    },
    bytes,
    reset: cutAll,
    cut() {
      down = true;
      cutAll();
    },
    restore() {
      down = false;
    },
    moveTo(port: number) {
      target = port;
      down = false;
      cutAll();
    },
    close: () =>
      new Promise<void>((resolve) => {
        cutAll();
        server.close(() => resolve());
      }),
  };
}
