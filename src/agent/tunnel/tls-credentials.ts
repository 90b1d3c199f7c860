import * as grpc from '@grpc/grpc-js';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';

/**
 * TLS credentials for the tunnel's gRPC channel. grpc-js sends the host it
 * dials (or grpc.ssl_target_name_override) as the TLS ServerName even when it
 * is an IP literal, which RFC 6066 forbids and for which Node prints a
 * DeprecationWarning on every agent start against grpcs://<IP>. For an IP the
 * connector's servername is dropped: no SNI is sent, and the certificate is
 * still checked against the IP (Node checks `host` when there is no
 * servername; with a name override grpc-js checks that name itself).
 */
export function tlsCredentials(roots: string[] | undefined): grpc.ChannelCredentials {
  const creds = grpc.credentials.createSsl(roots ? Buffer.from(roots.join('\n')) : undefined);
  const create = creds._createSecureConnector.bind(creds);
  creds._createSecureConnector = (target, options, callCredentials) => {
    const connector = create(target, options, callCredentials);
    // grpc-js keeps the tls.connect options on its connector; a version that does not leaves nothing to drop.
    const tls = (connector as { connectionOptions?: ConnectionOptions }).connectionOptions;
    if (tls?.servername && isIP(tls.servername)) delete tls.servername;
    return connector;
  };
  return creds;
}
