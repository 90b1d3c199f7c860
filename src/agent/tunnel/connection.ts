import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { Logger } from '../../shared/log/logger.js';
import type { BackoffOptions } from '../../shared/retry/backoff.js';
import { VERSION, versionsCompatible } from '../../shared/version.js';
import { describeCallError, isServerShutdown } from './errors.js';
import { FailoverForwarder } from './failover.js';
import { tlsCredentials } from './tls-credentials.js';
import type { KasAddress } from './kas-address.js';
import { MAX_MESSAGE_BYTES } from '../../shared/agent-api.js';
import { VerdictError } from '../../shared/errors.js';
import { WsBridge } from './ws-bridge.js';

export interface ConnectionOptions {
  address: KasAddress;
  /** More server replicas (repeated --kas-address): tried in turn when one does not answer. */
  fallbacks?: KasAddress[];
  /** The agent token as read at start-up. */
  token: string;
  /** Re-read when it changes (a rotated Secret), so a new token needs no restart. */
  tokenFile?: string;
  caCertFile?: string;
  /** The loops' backoff; grpc-js's own reconnect backoff follows it. */
  backoff?: BackoffOptions;
  log: Logger;
}

// Channel settings of the original agent: keepalive 55 s, 10 MiB messages.
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 55_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.primary_user_agent': `verdict-agent/${VERSION}`,
};

/** Reads --ca-cert-file; the CA is added to Node's trusted roots, not put in their place. */
function trustedRoots(file: string): string[] {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read --ca-cert-file ${file}: ${(e as Error).message}; pass the PEM file of the CA that signed the server's certificate`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new Error(`--ca-cert-file ${file} holds no PEM certificate ("-----BEGIN CERTIFICATE-----"); pass the CA certificate, not a key or a DER file`);
  return [...rootCertificates, pem];
}

/**
 * The agent's way to the server, shared by every client the agent opens: the
 * gRPC target, credentials and options for the scheme of --kas-address, and
 * the token as call metadata.
 */
export class Tunnel {
  private token: string;
  private warnedVersion = '';
  private lastExplained: { text: string; at: number } | undefined;
  private failover: FailoverForwarder | undefined;

  private constructor(
    private readonly opts: ConnectionOptions,
    readonly target: string,
    readonly credentials: grpc.ChannelCredentials,
    readonly options: grpc.ChannelOptions,
    private readonly bridge: WsBridge | undefined,
  ) {
    this.token = opts.token;
  }

  static async open(opts: ConnectionOptions): Promise<Tunnel> {
    const a = opts.address;
    const tls = a.scheme === 'grpcs' || a.scheme === 'wss';
    if (opts.caCertFile && !tls)
      opts.log.warn({ ca_cert_file: opts.caCertFile, kas_address: a.raw }, '--ca-cert-file is ignored: --kas-address does not use TLS (grpcs:// or wss://)');
    const roots = opts.caCertFile && tls ? trustedRoots(opts.caCertFile) : undefined;
    const options: grpc.ChannelOptions = {
      ...CHANNEL_OPTIONS,
      ...(opts.backoff ? { 'grpc.initial_reconnect_backoff_ms': opts.backoff.initialMs, 'grpc.max_reconnect_backoff_ms': opts.backoff.maxMs } : {}),
    };
    if (opts.fallbacks?.length) {
      const all = [a, ...opts.fallbacks];
      if (a.scheme === 'ws' || a.scheme === 'wss' || all.some((x) => x.scheme !== a.scheme)) {
        throw new VerdictError(
          'VERDICT_BAD_REQUEST',
          `several --kas-address values must all be grpc:// or all grpcs:// (got ${all.map((x) => x.raw).join(', ')}); for ws:// or wss:// give one address, e.g. of a load balancer`,
        );
      }
      const fwd = await FailoverForwarder.start(all, (to, reason) =>
        opts.log.warn({ kas_address: to.raw, error: reason }, 'Switched to another --kas-address'),
      );
      const creds = tls ? tlsCredentials(roots) : grpc.credentials.createInsecure();
      // The channel dials loopback; TLS must still check the server's own name (the first address's host).
      const t = new Tunnel(
        opts,
        fwd.target,
        creds,
        tls ? { ...options, 'grpc.ssl_target_name_override': a.host, 'grpc.default_authority': a.host } : options,
        undefined,
      );
      t.failover = fwd;
      return t;
    }
    if (a.scheme === 'ws' || a.scheme === 'wss') {
      const bridge = await WsBridge.start({ address: a, userAgent: `verdict-agent/${VERSION}`, ca: roots });
      // TLS, if any, is the WebSocket's; gRPC runs in clear inside it.
      return new Tunnel(opts, bridge.target, grpc.credentials.createInsecure(), { ...options, 'grpc.default_authority': a.target }, bridge);
    }
    const creds = tls ? tlsCredentials(roots) : grpc.credentials.createInsecure();
    return new Tunnel(opts, a.target, creds, options, undefined);
  }

  get address(): KasAddress {
    return this.opts.address;
  }

  /** Metadata every call carries: the current token and our version. */
  metadata(): grpc.Metadata {
    this.refreshToken();
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.token}`);
    md.set('verdict-version', VERSION);
    return md;
  }

  /** Log text for a failed call, with the likely fix. */
  describe(err: unknown): string {
    const e = err as { code?: number; details?: string };
    // grpc-js names the cause of a failed connection once, then says "Last error: null" while it backs off.
    if (e.code === grpc.status.UNAVAILABLE && /Last error: null/.test(e.details ?? '') && this.lastExplained && Date.now() - this.lastExplained.at < 60_000) {
      return this.lastExplained.text;
    }
    const text = describeCallError(err, this.failover?.current ?? this.opts.address, this.bridge?.lastError() ?? this.failover?.lastError());
    if (e.code === grpc.status.UNAVAILABLE) this.lastExplained = { text, at: Date.now() };
    return text;
  }

  /**
   * Whether a call ended because the server shut down cleanly: it cut its streams or sent GOAWAY (gRPC), or
   * closed the WebSocket with 1001 Going Away (ws://, wss://). Logged at info, not as a failure.
   */
  endedByShutdown(err: unknown): boolean {
    if (isServerShutdown(err)) return true;
    return (err as { code?: number } | undefined)?.code === grpc.status.UNAVAILABLE && Boolean(this.bridge?.wentAway());
  }

  /** Warns once per server version when the server's release does not match ours. */
  checkServerVersion(md: grpc.Metadata, log: Logger): void {
    const v = md.get('verdict-version')[0];
    if (typeof v !== 'string' || versionsCompatible(v, VERSION) || this.warnedVersion === v) return;
    this.warnedVersion = v;
    log.error(
      { server_version: v, agent_version: VERSION },
      `Server version ${v} and agent version ${VERSION} differ in major.minor; run the same release on both`,
    );
  }

  async close(): Promise<void> {
    await this.bridge?.close();
    await this.failover?.close();
  }

  // Read on every call: calls are one per stream, and a Secret's update is a symlink swap mtime may not show.
  private refreshToken(): void {
    const file = this.opts.tokenFile;
    if (!file) return;
    let t = '';
    try {
      t = readFileSync(file, 'utf8').trim();
    } catch {
      // Mid-update (a Secret is swapped by symlink); the next call tries again.
    }
    if (t && t !== this.token) {
      this.token = t;
      this.opts.log.info({ token_file: file }, 'The agent token in --token-file changed; using the new one');
    }
  }
}
