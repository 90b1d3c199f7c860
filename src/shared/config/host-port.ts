import { isIPv6 } from 'node:net';
import { refine, str, type Validator } from './schema.js';

// Listen and dial addresses as config files and flags spell them, for
// servers, agents and modules alike.

// "[v6]:port" (an IPv4-mapped v6 address has dots) or "host:port" with an empty host.
const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:/[\]]*)):(\d{1,5})$/;

/** Splits "host:port" (or "[v6]:port"); port 0 asks the OS for a free port. */
export function splitHostPort(a: string): { host: string; port: number } {
  const m = HOST_PORT.exec(a);
  // A zone (fe80::1%eth0) names an interface of this host only; Verdict's addresses do without.
  if (!m && /^\[[^\]]*%/.test(a)) throw new Error(`"${a}" is not host:port: an IPv6 zone (%...) is not supported, give the address without it`);
  // fd00::1:8080 cannot be told from the address fd00::1:8080 without a port; brackets say where the port starts.
  const v6 = /^(.*):(\d{1,5})$/.exec(a);
  if (!m && v6 && isIPv6(v6[1]!)) throw new Error(`"${a}" is not host:port: write an IPv6 address in brackets, [${v6[1]}]:${v6[2]}`);
  if (!m) throw new Error(`"${a}" is not host:port`);
  // The pattern lets through brackets of any hex digits, colons and dots: "[...]:80", "[:]:80".
  if (m[1] !== undefined && !isIPv6(m[1])) throw new Error(`"[${m[1]}]" is not an IPv6 address`);
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
  return refine(str({ pattern: PORT_LAST, hint }), (address) => hostPortProblem(address, hint, opts));
}

// What hostPort() lets through to hostPortProblem: host:port, and the IPv6
// forms it has a message for (a zone, no brackets); the rest is "not valid" with the hint.
const PORT_LAST = new RegExp(`${HOST_PORT.source}|^\\[[^\\]]*%[^\\]]*\\]:\\d{1,5}$|^[0-9a-fA-F.]*:[0-9a-fA-F:.]*:\\d{1,5}$`);

/** What is wrong with an address, ending with `hint`; the one check behind hostPort() and the address flags. */
export function hostPortProblem(address: string, hint: string, opts: { dial?: boolean } = {}): string | undefined {
  let port: number;
  try {
    port = splitHostPort(address).port;
  } catch (e) {
    return `${(e as Error).message}: ${hint}`;
  }
  if (!opts.dial) return undefined;
  if (address.startsWith(':')) return `"${address}" names no host to connect to: ${hint}`;
  return port === 0 ? `port 0 picks a free port only for a listener; give the port to connect to: ${hint}` : undefined;
}
