import { join } from 'node:path';
import { runConfigStream, type ConfigUpdate } from '../../src/agent/tunnel/config-client.js';
import { Tunnel } from '../../src/agent/tunnel/connection.js';
import { parseKasAddress } from '../../src/agent/tunnel/kas-address.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { SERVER_DEFAULTS, type ServerConfig } from '../../src/shared/config/server-config.js';
import type { Logger } from '../../src/shared/log/logger.js';

/** A real server with its data in `dir`/server, listening on free loopback ports. */
export function startLocalServer(dir: string, log: Logger, settings: Partial<ServerConfig> = {}): Promise<RunningServer> {
  return startServer({ ...SERVER_DEFAULTS, data_dir: join(dir, 'server'), http_addr: '127.0.0.1:0', grpc_addr: '127.0.0.1:0', ...settings }, log);
}

/**
 * The agent's own configuration stream to `server` over a real tunnel, each configuration it applies pushed to
 * `updates`. Its reconnect backoff is fixed at `backoffMs`: a long one shows what arrives without a reconnect.
 */
export async function agentConfigStream(
  server: RunningServer,
  token: string,
  log: Logger,
  backoffMs: number,
): Promise<{ updates: ConfigUpdate[]; close(): Promise<void> }> {
  const updates: ConfigUpdate[] = [];
  const abort = new AbortController();
  const tunnel = await Tunnel.open({ address: parseKasAddress(`grpc://${server.grpcAddress}`), token, log });
  const loop = runConfigStream(tunnel, { initialMs: backoffMs, maxMs: backoffMs, jitter: false }, log, abort.signal, async (u) => {
    updates.push(u);
  });
  return {
    updates,
    close: async () => {
      abort.abort();
      await loop;
      await tunnel.close();
    },
  };
}
