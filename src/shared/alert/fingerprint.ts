import * as crypto from 'node:crypto';

// crypto.hash (Node 20.12+) digests a string in one call, several times faster
// than createHash/update/digest for strings this short; both alert builders
// (Cilium, Falco) call this once per occurrence.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

// A flood repeats a few identities: their digests are remembered, so a repeat
// costs a lookup of its text instead of a SHA-256. Bounded, and forgotten
// whole when full (a digest is cheap to make again).
const KNOWN_MAX = 4096;
const KNOWN_TEXT_MAX = 1024;
const known = new Map<string, string>();

/**
 * Stable digest of the parts that identify "the same thing". Parts are joined
 * with a separator that cannot appear in them unescaped, so ["a|b"] and
 * ["a", "b"] never collide.
 */
export function fingerprint(parts: readonly string[]): string {
  let text = '';
  for (const p of parts) {
    text += p.includes('\\') || p.includes('\u001f') ? p.replaceAll('\\', '\\\\').replaceAll('\u001f', '\\u001f') : p;
    text += '\u001f';
  }
  const had = known.get(text);
  if (had !== undefined) return had;
  const hex = (oneShot ? oneShot('sha256', text, 'hex') : crypto.createHash('sha256').update(text).digest('hex')).slice(0, 40);
  if (text.length <= KNOWN_TEXT_MAX) {
    if (known.size >= KNOWN_MAX) known.clear();
    known.set(text, hex);
  }
  return hex;
}
