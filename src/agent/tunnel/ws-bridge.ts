import { createServer, type Server, type Socket } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createWebSocketStream, WebSocket } from 'ws';
import { dialErrorText, explainTransportError } from './errors.js';
import type { KasAddress } from './kas-address.js';
import { listenLoopback, loopbackTarget, splice } from './loopback.js';
import { AGENT_WS_PATH, AGENT_WS_SUBPROTOCOL } from '../../shared/agent-api.js';

// grpc-js cannot dial through a WebSocket, so the agent gives it a loopback
// listener instead: every connection grpc-js opens there is paired with a new
// WebSocket to the server (subprotocol ws-tunnel) and bytes flow both ways
// unchanged. gRPC still does its own framing, keepalive and flow control
// inside; the WebSocket is only the pipe, as with the original agent.

const MAX_WS_MESSAGE = 16 * 1024 * 1024;
const HANDSHAKE_TIMEOUT_MS = 20_000;

export interface WsBridgeOptions {
  address: KasAddress;
  /** Trusted CAs for wss://; undefined keeps Node's defaults. */
  ca?: string[];
  userAgent: string;
}

export class WsBridge {
  private readonly sockets = new Set<Socket>();
  private readonly websockets = new Set<WebSocket>();
  private lastErr: { text: string; at: number } | undefined;
  /** When the server last closed an open WebSocket with 1001 Going Away (it shut down), until the next dial. */
  private wentAwayAt: number | undefined;

  private constructor(
    private readonly server: Server,
    private readonly opts: WsBridgeOptions,
  ) {}

  static async start(opts: WsBridgeOptions): Promise<WsBridge> {
    const server = createServer({ noDelay: true });
    const bridge = new WsBridge(server, opts);
    server.on('connection', (s) => bridge.onConnection(s));
    await listenLoopback(server);
    return bridge;
  }

  /** host:port of the loopback listener, the gRPC channel's target. */
  get target(): string {
    return loopbackTarget(this.server, 'WebSocket bridge');
  }

  /** Why the last WebSocket dial failed, if it failed recently and nothing has connected since. */
  lastError(withinMs = 60_000): string | undefined {
    return this.lastErr && Date.now() - this.lastErr.at < withinMs ? this.lastErr.text : undefined;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    for (const w of this.websockets) w.terminate();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Whether the server closed the WebSocket as it shut down (1001) within `withinMs`, with no dial since. */
  wentAway(withinMs = 10_000): boolean {
    return this.wentAwayAt !== undefined && Date.now() - this.wentAwayAt < withinMs;
  }

  private fail(text: string): void {
    this.lastErr = { text, at: Date.now() };
    this.wentAwayAt = undefined;
  }

  /** An open WebSocket the server (or something between) closed: why, for the calls that fail with it. */
  private closedByServer(code: number, reason: string): void {
    const url = this.opts.address.url!;
    const why = reason ? ` ${reason}` : '';
    this.wentAwayAt = code === 1001 ? Date.now() : undefined;
    this.lastErr = {
      at: Date.now(),
      text:
        code === 1001
          ? `the server closed the WebSocket as it shut down (1001${why})`
          : code === 1006
            ? `the WebSocket to ${url} was cut without a close frame: the server stopped, or something between (a proxy, a load balancer's idle timeout) cut it`
            : `the server closed the WebSocket to ${url} (${code}${why})`,
    };
  }

  private onConnection(local: Socket): void {
    this.sockets.add(local);
    local.pause();
    const url = this.opts.address.url!;
    const ws = new WebSocket(url, AGENT_WS_SUBPROTOCOL, {
      headers: { 'user-agent': this.opts.userAgent },
      perMessageDeflate: false,
      maxPayload: MAX_WS_MESSAGE,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ...(this.opts.ca ? { ca: this.opts.ca } : {}),
    });
    this.websockets.add(ws);
    let open = false;
    // Only a dial's first failure says why; what follows is our own clean-up.
    let failed = false;
    const fail = (text: string) => {
      if (failed) return;
      failed = true;
      this.fail(text);
    };
    const cleanup = () => {
      this.sockets.delete(local);
      this.websockets.delete(ws);
    };
    local.once('close', () => {
      cleanup();
      if (!open) {
        failed = true;
        ws.terminate();
      }
    });
    local.on('error', () => local.destroy());
    ws.on('unexpected-response', (_req, res) => {
      failed = true;
      // Read the body first: it often says why (our JSON message, Node's ALPN notice).
      this.onHttpResponse(res, () => {
        ws.terminate();
        local.destroy();
      });
    });
    ws.on('error', (e: Error & { code?: string }) => {
      if (!open) {
        const text = dialErrorText(e);
        if (/subprotocol/i.test(text)) {
          fail(
            `${url} upgraded the WebSocket but did not accept the "${AGENT_WS_SUBPROTOCOL}" subprotocol (${text}): it is not a Verdict server's agent endpoint; check the path in --kas-address (e.g. ${AGENT_WS_PATH})`,
          );
        } else {
          fail(explainTransportError(text, this.opts.address) ?? `WebSocket to ${url} failed: ${text}`);
        }
      }
      local.destroy();
    });
    ws.on('close', (code: number, reason: Buffer) => {
      // A local end closed first is grpc-js's (or the agent's) doing: nothing to explain.
      if (open && !local.destroyed) this.closedByServer(code, reason.toString());
    });
    ws.on('open', () => {
      if (ws.protocol !== AGENT_WS_SUBPROTOCOL) {
        fail(
          `${url} accepted the WebSocket without the "${AGENT_WS_SUBPROTOCOL}" subprotocol: it is not a Verdict server's agent endpoint; check the path in --kas-address (e.g. ${AGENT_WS_PATH})`,
        );
        ws.terminate();
        local.destroy();
        return;
      }
      open = true;
      this.lastErr = undefined;
      this.wentAwayAt = undefined;
      splice(local, createWebSocketStream(ws));
    });
  }

  private onHttpResponse(res: IncomingMessage, done: () => void): void {
    const url = this.opts.address.url!;
    const status = res.statusCode ?? 0;
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      if (size < 4096) chunks.push(c);
      size += c.length;
    });
    const base = `server answered HTTP ${status} instead of upgrading the WebSocket at ${url}`;
    const hint = (): string => {
      if (status >= 300 && status < 400) {
        const loc = res.headers.location;
        return `${base} (Location: ${loc ?? 'none'}); --kas-address must be the agent endpoint itself, with its trailing slash, e.g. ${this.opts.address.scheme}://${this.opts.address.target}/-/kubernetes-agent/`;
      }
      if (status === 404)
        return `${base}: there is no agent endpoint at that path; use ${this.opts.address.scheme}://${this.opts.address.target}/-/kubernetes-agent/`;
      return base;
    };
    this.fail(hint());
    const timer = setTimeout(() => res.destroy(), 2000);
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      explain();
      done();
    };
    res.on('end', finish);
    res.on('close', finish);
    res.on('error', finish);
    const explain = () => {
      const text = Buffer.concat(chunks).toString('utf8');
      // Node's HTTP/2-only servers (the gRPC listener) refuse HTTP/1.1 with this.
      if (/ALPN/i.test(text)) {
        this.fail(
          `${base}: ${this.opts.address.target} is probably the server's gRPC port; use grpcs://${this.opts.address.target} for that port, or point wss:// at the server's HTTP address (--http-addr) with the path /-/kubernetes-agent/`,
        );
        return;
      }
      // Our server explains refusals (subprotocol, rate limit) in a JSON body.
      try {
        const body = JSON.parse(text) as { message?: string };
        if (body.message) this.fail(`${hint()}: ${body.message}`);
      } catch {
        // Not ours, or no body: the status says enough.
      }
    };
    res.resume();
  }
}
