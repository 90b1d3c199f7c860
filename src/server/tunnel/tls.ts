import * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';
import { createSecureContext, createServer, type Server, type TLSSocket } from 'node:tls';

// TLS for both listeners. gRPC gets server credentials; the HTTP listener (feed,
// admin API and the agent WebSocket, hence wss://) gets a TLS front that hands
// decrypted connections to Fastify's own HTTP server, which is how Node's https
// server works too; that keeps Fastify's construction untouched.

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
    throw new Error(`cannot read ${what} ${file}: ${(e as Error).message}; point tls.${what === 'certificate' ? 'cert_file' : 'key_file'} (--tls-${what === 'certificate' ? 'cert' : 'key'}-file) at a PEM file`);
  }
}

/** Reads and checks the pair at start-up, so a wrong file fails now rather than at the first handshake. */
export function loadTls(files: TlsFiles): TlsMaterial {
  const cert = read(files.cert_file, 'certificate');
  const key = read(files.key_file, 'key');
  if (!cert.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`tls.cert_file ${files.cert_file} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    const msg = (e as Error).message;
    if (/key values mismatch/i.test(msg)) throw new Error(`tls.key_file ${files.key_file} is not the key of tls.cert_file ${files.cert_file}; use the key the certificate was issued for`);
    throw new Error(`cannot use tls.cert_file ${files.cert_file} and tls.key_file ${files.key_file}: ${msg}`);
  }
  return { cert, key };
}

export function grpcServerCredentials(tls: TlsMaterial | undefined): grpc.ServerCredentials {
  return tls ? grpc.ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false) : grpc.ServerCredentials.createInsecure();
}

/** Serves Fastify's HTTP server over TLS on host:port; returns the TLS listener. */
export async function listenTls(app: FastifyInstance, tls: TlsMaterial, host: string, port: number): Promise<Server> {
  await app.ready();
  const sockets = new Set<TLSSocket>();
  const server = createServer({ cert: tls.cert, key: tls.key, ALPNProtocols: ['http/1.1'] }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    app.server.emit('connection', socket);
  });
  // A client speaking plain HTTP to the TLS port, or rejecting our certificate, is the client's problem to report.
  server.on('tlsClientError', (err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => {
    for (const s of sockets) s.destroy();
    return close(cb);
  };
  return server;
}
