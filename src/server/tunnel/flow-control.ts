import type * as grpc from '@grpc/grpc-js';
import type { Http2Server, ServerHttp2Session } from 'node:http2';

// HTTP/2 starts every stream and connection with a 64 KiB receive window, and
// grpc-js's server has no option to change it. An alert batch is ~0.7 MB, so
// with that window the agent stalls every 64 KiB until the server's event loop
// gets round to acknowledging data, which it cannot do while it parses the
// previous batch: batches in flight then buy nothing. A larger window lets the
// agent keep its pipeline full. Memory stays bounded by the agent's in-flight
// batches, since the server acknowledges, and the agent sends, batch by batch.

const STREAM_WINDOW = 8 * 1024 * 1024;
const CONNECTION_WINDOW = 16 * 1024 * 1024;

const widened = new WeakSet<object>();

function widen(session: ServerHttp2Session): void {
  const apply = () => {
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW);
      session.settings({ initialWindowSize: STREAM_WINDOW });
    } catch {
      // A session closing as we set it up; nothing to tune.
    }
  };
  // Settings can only be sent once the session is up.
  if (session.connecting) session.once('connect', apply);
  else apply();
}

/**
 * Raises the receive windows of every HTTP/2 server the gRPC server has so
 * far (bound ports and connection injectors); call after each bind or injector.
 * Uses grpc-js internals (its map of HTTP/2 servers) and does nothing if they change.
 */
export function widenFlowControlWindows(server: grpc.Server): void {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const h of servers.keys()) {
    if (widened.has(h) || typeof h.on !== 'function') continue;
    widened.add(h);
    h.on('session', widen);
  }
}
