import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

// TLS for both listeners, from one certificate and key: gRPC gets server
// credentials; the HTTP listener (feed, admin API and the agent WebSocket, hence
// wss://) is built as Fastify's https server with the same material
// (feed/http-server.ts).

export interface TlsFiles {
  cert_file: string;
  key_file: string;
}

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

function read(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(
      `cannot read ${what} ${file}: ${(e as Error).message}; point tls.${what === 'certificate' ? 'cert_file' : 'key_file'} (--tls-${what === 'certificate' ? 'cert' : 'key'}-file) at a PEM file`,
    );
  }
}

/** Reads and checks the pair at start-up, so a wrong file fails now rather than at the first handshake. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const cert = read(files.cert_file, 'certificate');
  const key = read(files.key_file, 'key');
  if (!cert.includes('-----BEGIN CERTIFICATE-----'))
    throw new Error(`tls.cert_file ${files.cert_file} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    const msg = (e as Error).message;
    if (/key values mismatch/i.test(msg))
      throw new Error(`tls.key_file ${files.key_file} is not the key of tls.cert_file ${files.cert_file}; use the key the certificate was issued for`);
    throw new Error(`cannot use tls.cert_file ${files.cert_file} and tls.key_file ${files.key_file}: ${msg}`);
  }
  return { cert, key };
}

export function grpcServerCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  return tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
}
