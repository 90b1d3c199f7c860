import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint } from './fingerprint.js';

/** The digest as stored alerts have it: escaped parts, each followed by U+001F, fed to SHA-256 one by one. */
function reference(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) {
    h.update(p.replaceAll('\\', '\\\\').replaceAll('\u001f', '\\u001f'));
    h.update('\u001f');
  }
  return h.digest('hex').slice(0, 40);
}

describe('fingerprint', () => {
  it('keeps the digest alerts were stored with, escapes included', () => {
    for (const parts of [['falco', 'syscall', 'r', ''], ['a|b'], ['a', 'b'], ['back\\slash', 'unit\u001fsep', '\\u001f'], ['ünïcode', '日本'], []]) {
      expect(fingerprint(parts), JSON.stringify(parts)).toBe(reference(parts));
    }
    expect(fingerprint(['a|b'])).not.toBe(fingerprint(['a', 'b']));
  });
});
