import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { VERSION } from '../../shared/version.js';
import type { KasAddress } from './kas-address.js';

export interface ConnectionOptions {
  address: KasAddress;
  token: string;
  caCertFile?: string;
}

// Channel settings of the original agent: keepalive 55 s, 10 MiB messages.
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 55_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_receive_message_length': 10 * 1024 * 1024,
  'grpc.max_send_message_length': 10 * 1024 * 1024,
  'grpc.primary_user_agent': `verdict-agent/${VERSION}`,
};

/** Target, credentials and options for every client the agent opens to the server. */
export function channelFor(opts: ConnectionOptions): { target: string; credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  if (opts.address.scheme === 'ws' || opts.address.scheme === 'wss') {
    throw new Error(`--kas-address ${opts.address.raw}: the WebSocket transports are not available in this release; use grpc://host:port or grpcs://host:port`);
  }
  // The token travels as per-call metadata (see callMetadata), which works on
  // plain and TLS channels alike.
  const channelCreds = opts.address.scheme === 'grpcs'
    ? grpc.credentials.createSsl(opts.caCertFile ? readFileSync(opts.caCertFile) : undefined)
    : grpc.credentials.createInsecure();
  return { target: opts.address.target, credentials: channelCreds, options: CHANNEL_OPTIONS };
}

/** Metadata every call to the server carries. */
export function callMetadata(token: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  md.set('verdict-version', VERSION);
  return md;
}
