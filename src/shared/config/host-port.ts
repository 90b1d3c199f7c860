// Listen and dial addresses as config files and flags spell them, for
// servers, agents and modules alike.

/** Splits "host:port" (or "[v6]:port"); port 0 asks the OS for a free port. */
export function splitHostPort(a: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([^\s:/]*)):(\d{1,5})$/.exec(a);
  if (!m) throw new Error(`"${a}" is not host:port`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}
