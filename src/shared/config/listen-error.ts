import { splitHostPort } from './host-port.js';

// Node's listen errors carry a `code`; grpc-js's bindAsync puts the same codes
// only in its message ("... errors: [listen EADDRINUSE: ...]"), and says
// "Name resolution failed" for a host that does not resolve.
const CODE_IN_MESSAGE = /\b(EADDRINUSE|EADDRNOTAVAIL|EACCES|ENOTFOUND|EAI_AGAIN)\b/;

function causeCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CODE_IN_MESSAGE.test(code)) return code;
  const message = err instanceof Error ? err.message : String(err);
  if (/Name resolution failed/i.test(message)) return 'ENOTFOUND';
  return CODE_IN_MESSAGE.exec(message)?.[1];
}

/**
 * Why a listener could not bind `address` and what to do, worded by cause, for
 * every listener (agent API, HTTP, observability, module listeners).
 * `what` says what listens ("for agents"), `setting` where the address is set
 * ("--grpc-addr", "falco.http.listen"); `otherwise` is a last way out the
 * message offers (turning an optional listener off).
 */
export function listenError(what: string, address: string, err: unknown, setting: string, otherwise?: string): Error {
  let host = address;
  let port = '';
  try {
    const a = splitHostPort(address);
    host = a.host;
    port = String(a.port);
  } catch {
    // An address that does not split was refused before anything listened; keep it whole.
  }
  const thisMachine = `set ${setting} to an address of this machine, e.g. 0.0.0.0:${port || '<port>'} (every interface) or 127.0.0.1:${port || '<port>'} (this machine only)`;
  let why: string;
  switch (causeCode(err)) {
    case 'EADDRINUSE':
      why = `the address is in use by another process; stop it, or set ${setting} to a free port`;
      break;
    case 'EADDRNOTAVAIL':
      why = `${host} is not an address of this machine; ${thisMachine}`;
      break;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      why = `the host name ${host} does not resolve; ${thisMachine}`;
      break;
    case 'EACCES':
      why =
        port !== '' && Number(port) < 1024
          ? `port ${port} needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE); set ${setting} to a port of 1024 or above`
          : `this process may not listen there (a security policy such as SELinux, AppArmor or the container's forbids it); allow it, or set ${setting} to a permitted address`;
      break;
    default:
      why = `${err instanceof Error ? err.message : String(err)}; check ${setting}`;
  }
  return new Error(`cannot listen ${what} on ${address}: ${why}${otherwise ? `; or ${otherwise}` : ''}`, { cause: err });
}
