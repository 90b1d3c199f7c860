import { connect, createServer, type Server, type Socket } from 'node:net';
import { splitHostPort } from '../../shared/config/host-port.js';
import { dialErrorText, explainTransportError } from './errors.js';
import type { KasAddress } from './kas-address.js';
import { listenLoopback, loopbackTarget, splice } from './loopback.js';

// Several --kas-address values (server replicas sharing one Kafka alert log):
// the gRPC channel dials a loopback listener, and each connection grpc-js
// opens there goes to the first address that accepts, starting with the one
// that worked last. When that server goes away grpc-js reconnects, as it
// would to one address, and lands on the next. TLS, if any, is still
// end-to-end between grpc-js and the server; this only forwards bytes.

const DIAL_TIMEOUT_MS = 5_000;

export class FailoverForwarder {
  private readonly sockets = new Set<Socket>();
  private index = 0;
  private lastErr: { text: string; at: number } | undefined;

  private constructor(
    private readonly server: Server,
    private readonly addresses: KasAddress[],
    private readonly onSwitch?: (a: KasAddress, reason: string) => void,
  ) {}

  static async start(addresses: KasAddress[], onSwitch?: (a: KasAddress, reason: string) => void): Promise<FailoverForwarder> {
    const server = createServer({ noDelay: true });
    const f = new FailoverForwarder(server, addresses, onSwitch);
    server.on('connection', (s) => f.onConnection(s));
    await listenLoopback(server);
    return f;
  }

  /** host:port of the loopback listener, the gRPC channel's target. */
  get target(): string {
    return loopbackTarget(this.server, 'failover listener');
  }

  /** The address connections go to now (the last one that accepted). */
  get current(): KasAddress {
    return this.addresses[this.index]!;
  }

  /** Why every address failed, if they did recently and nothing has connected since. */
  lastError(withinMs = 60_000): string | undefined {
    return this.lastErr && Date.now() - this.lastErr.at < withinMs ? this.lastErr.text : undefined;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(local: Socket): void {
    this.sockets.add(local);
    local.pause();
    local.on('error', () => local.destroy());
    local.once('close', () => this.sockets.delete(local));
    const errors: string[] = [];
    const start = this.index;
    const tryAt = (i: number) => {
      if (local.destroyed) return;
      if (i - start >= this.addresses.length) {
        this.lastErr = { text: `none of the --kas-address values accepts a connection: ${errors.join('; ')}`, at: Date.now() };
        local.destroy();
        return;
      }
      const idx = i % this.addresses.length;
      const a = this.addresses[idx]!;
      const remote = connect({ ...splitHostPort(a.target), noDelay: true });
      this.sockets.add(remote);
      remote.setTimeout(DIAL_TIMEOUT_MS, () => remote.destroy(new Error(`no answer within ${DIAL_TIMEOUT_MS / 1000} s`)));
      let connected = false;
      remote.once('error', (e: Error & { code?: string }) => {
        if (connected) return;
        const text = dialErrorText(e);
        errors.push(explainTransportError(text, a) ?? `${a.raw}: ${text}`);
        tryAt(i + 1);
      });
      remote.once('close', () => this.sockets.delete(remote));
      remote.once('connect', () => {
        connected = true;
        remote.setTimeout(0);
        if (idx !== this.index) {
          this.index = idx;
          this.onSwitch?.(a, errors.join('; '));
        }
        this.lastErr = undefined;
        splice(local, remote);
      });
    };
    tryAt(start);
  }
}
