import * as crypto from 'node:crypto';

// crypto.hash (Node 20.12+) digests a string in one call, several times faster
// than createHash/update/digest for strings this short; both alert builders
// (Cilium, Falco) call this once per occurrence.
const oneShot = (crypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;

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
  const hex = oneShot ? oneShot('sha256', text, 'hex') : crypto.createHash('sha256').update(text).digest('hex');
  return hex.slice(0, 40);
}
