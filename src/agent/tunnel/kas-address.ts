// --kas-address as operators of the GitLab agent know it: grpc:// and grpcs://
// reach the server's gRPC listener; ws:// and wss:// carry the same gRPC API in
// a WebSocket on its HTTP listener (path /-/kubernetes-agent/).

import { AGENT_WS_PATH } from '../../shared/agent-api.js';
import { VerdictError } from '../../shared/errors.js';

export interface KasAddress {
  scheme: 'grpc' | 'grpcs' | 'ws' | 'wss';
  /** host:port: the gRPC channel's target, or where the WebSocket connects. */
  target: string;
  /** Host name (or address) without port or brackets: TLS server name and :authority. */
  host: string;
  /** The WebSocket URL (ws/wss only). */
  url?: string;
  raw: string;
}

export function parseKasAddress(raw: string): KasAddress {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      `--kas-address "${raw}" is not a URL; use grpc://host:port, grpcs://host:port, ws://host/path/ or wss://host/path/`,
    );
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme !== 'grpc' && scheme !== 'grpcs' && scheme !== 'ws' && scheme !== 'wss') {
    throw new VerdictError('VERDICT_BAD_REQUEST', `--kas-address scheme "${scheme}" is not supported; use grpc://, grpcs://, ws:// or wss://`);
  }
  if (scheme === 'ws' || scheme === 'wss') {
    if (!url.pathname.endsWith('/')) {
      throw new VerdictError(
        'VERDICT_BAD_REQUEST',
        `--kas-address "${raw}" must end with a slash (e.g. ${raw}/); without it the server answers 301 instead of upgrading the WebSocket`,
      );
    }
  }
  if (!url.hostname)
    throw new VerdictError(
      'VERDICT_BAD_REQUEST',
      `--kas-address "${raw}" has no host; use e.g. ${scheme}://verdict.example.com${scheme.startsWith('ws') ? AGENT_WS_PATH : ':8150'}`,
    );
  const port = url.port || (scheme === 'grpcs' || scheme === 'wss' ? '443' : '80');
  const host = url.hostname.startsWith('[') ? url.hostname : url.hostname.includes(':') ? `[${url.hostname}]` : url.hostname;
  const bare = host.replace(/^\[|\]$/g, '');
  if (scheme === 'ws' || scheme === 'wss') return { scheme, target: `${host}:${port}`, host: bare, url: url.href, raw };
  return { scheme, target: `${host}:${port}`, host: bare, raw };
}
