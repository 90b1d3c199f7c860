import { refine, str, type Validator } from './schema.js';

// Listen and dial addresses as config files and flags spell them, for
// servers, agents and modules alike.

// "[v6]:port" (an IPv4-mapped v6 address has dots) or "host:port" with an empty host.
const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:/[\]]*)):(\d{1,5})$/;

/** Splits "host:port" (or "[v6]:port"); port 0 asks the OS for a free port. */
export function splitHostPort(a: string): { host: string; port: number } {
  const m = HOST_PORT.exec(a);
  if (!m) throw new Error(`"${a}" is not host:port`);
  const port = Number(m[3]);
  // Five digits pass the pattern: a port past the range would only fail when something listens or dials.
  if (port > 65535) throw new Error(`port ${port} is over 65535`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/**
 * A config file's host:port, refused at its line when splitHostPort would
 * refuse it at listen or dial time. `hint` shows the form meant, e.g.
 * "host:port, e.g. 0.0.0.0:2801". An address to connect to (`dial`) must
 * name its host: an empty one means every interface only to a listener.
 */
export function hostPort(hint: string, opts: { dial?: boolean } = {}): Validator<string> {
  return refine(str({ pattern: HOST_PORT, hint }), (address) => hostPortProblem(address, hint, opts));
}

/** What is wrong with an address, ending with `hint`; the one check behind hostPort() and the address flags. */
export function hostPortProblem(address: string, hint: string, opts: { dial?: boolean } = {}): string | undefined {
  try {
    splitHostPort(address);
  } catch (e) {
    return `${(e as Error).message}: ${hint}`;
  }
  return opts.dial && address.startsWith(':') ? `"${address}" names no host to connect to: ${hint}` : undefined;
}
