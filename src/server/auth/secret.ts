import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// Tokens are 256-bit random secrets, so a plain SHA-256 is a safe way to store
// them (no password-style stretching needed) and makes lookup by hash possible.

export function newSecret(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time comparison of a presented secret against a stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
