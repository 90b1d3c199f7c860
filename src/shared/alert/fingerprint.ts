import { createHash } from 'node:crypto';

/**
 * Stable digest of the parts that identify "the same thing". Parts are joined
 * with a separator that cannot appear in them unescaped, so ["a|b"] and
 * ["a", "b"] never collide.
 */
export function fingerprint(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(p.replaceAll('\\', '\\\\').replaceAll('\u001f', '\\u001f'));
    h.update('\u001f');
  }
  return h.digest('hex').slice(0, 40);
}
