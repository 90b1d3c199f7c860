// --kas-address as operators of the GitLab agent know it. This release speaks
// plain and TLS gRPC; the WebSocket transports are refused with a clear message.

export interface KasAddress {
  scheme: 'grpc' | 'grpcs' | 'ws' | 'wss';
  /** host:port for the gRPC channel. */
  target: string;
  raw: string;
}

export class KasAddressError extends Error {
  readonly code = 'VERDICT_KAS_ADDRESS';
}

export function parseKasAddress(raw: string): KasAddress {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new KasAddressError(`--kas-address "${raw}" is not a URL; use grpc://host:port, grpcs://host:port, ws://host/path/ or wss://host/path/`);
  }
  const scheme = url.protocol.replace(/:$/, '');
  if (scheme !== 'grpc' && scheme !== 'grpcs' && scheme !== 'ws' && scheme !== 'wss') {
    throw new KasAddressError(`--kas-address scheme "${scheme}" is not supported; use grpc://, grpcs://, ws:// or wss://`);
  }
  if (scheme === 'ws' || scheme === 'wss') {
    if (!url.pathname.endsWith('/')) {
      throw new KasAddressError(`--kas-address "${raw}" must end with a slash (e.g. ${raw}/); without it the server answers 301 instead of upgrading the WebSocket`);
    }
  }
  const port = url.port || (scheme === 'grpcs' || scheme === 'wss' ? '443' : '80');
  const host = url.hostname.startsWith('[') ? url.hostname : url.hostname.includes(':') ? `[${url.hostname}]` : url.hostname;
  return { scheme, target: `${host}:${port}`, raw };
}
