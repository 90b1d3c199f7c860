import { describe, expect, it } from 'vitest';
import { clipChars, cutText } from './cut.js';

describe('cutText', () => {
  it('keeps a short text as it is', () => {
    expect(cutText('abc', 3)).toBe('abc');
  });
  it('cuts at the limit', () => {
    expect(cutText('abcdef', 4)).toBe('abcd');
  });
  it('never keeps half of a surrogate pair', () => {
    // '🔥' is two UTF-16 units; a cut after the first would leave a lone high surrogate.
    expect(cutText('ab🔥', 3)).toBe('ab');
    expect(cutText('ab🔥c', 4)).toBe('ab🔥');
    expect(cutText('ab🔥', 3)).not.toMatch(/[\uD800-\uDFFF]/);
  });
});

describe('clipChars', () => {
  it('counts characters, not UTF-16 units, and marks a cut with an ellipsis', () => {
    expect(clipChars('🔥🔥🔥', 3)).toBe('🔥🔥🔥');
    expect(clipChars('🔥🔥🔥🔥', 3)).toBe('🔥🔥…');
    expect(clipChars('abcdef', 4)).toBe('abc…');
  });
});
