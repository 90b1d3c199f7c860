// Listen and dial addresses as config files and flags spell them, for
// servers, agents and modules alike.

/** Splits "host:port" (or "[v6]:port"); port 0 asks the OS for a free port. */
export function splitHostPort(a: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^\s:/]*)):(\d{1,5})$/.exec(a);
  if (!m) throw new Error(`"${a}" is not host:port`);
  const port = Number(m[3]);
  // Five digits pass the pattern: a port past the range would only fail when something listens or dials.
  if (port > 65535) throw new Error(`port ${port} is over 65535`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
