import { describe, expect, it } from 'vitest';
import { globProblem, globToRegExp } from './glob.js';

describe('globToRegExp', () => {
  it.each([
    ['**/*.{yaml,yml,json}', 'a/b/c.yaml', true],
    ['**/*.{yaml,yml,json}', 'c.json', true],
    ['**/*.{yaml,yml,json}', 'c.txt', false],
    ['policies/*.yaml', 'policies/a.yaml', true],
    ['policies/*.yaml', 'policies/x/a.yaml', false],
    ['policies/**', 'policies/x/a.yaml', true],
    ['a?.yaml', 'ab.yaml', true],
    ['a?.yaml', 'a/.yaml', false],
    ['a.yaml', 'aXyaml', false],
  ])('%s matches %s: %s', (glob, path, want) => {
    expect(globToRegExp(glob).test(path)).toBe(want);
  });

  // Each case as doublestar v4's Match(pattern, name) answers it (the GitLab agent's matcher for paths[].glob).
  it.each([
    // character classes
    ['m/[ab]*.yaml', 'm/a1.yaml', true],
    ['m/[ab]*.yaml', 'm/b.yaml', true],
    ['m/[ab]*.yaml', 'm/c1.yaml', false],
    ['m/[!ab]*.yaml', 'm/a1.yaml', false],
    ['m/[!ab]*.yaml', 'm/c1.yaml', true],
    ['m/[^ab]*.yaml', 'm/c1.yaml', true],
    ['m/[^ab]*.yaml', 'm/b1.yaml', false],
    ['[a-c]x', 'bx', true],
    ['[a-c]x', 'dx', false],
    ['[a-cx-z]', 'y', true],
    ['[0-9][0-9]-*.yaml', '01-ns.yaml', true],
    ['[0-9][0-9]-*.yaml', 'a1-ns.yaml', false],
    ['[-a]x', '-x', true],
    ['[a-]x', '-x', true],
    ['[a\\-c]x', '-x', true],
    ['[a\\-c]x', 'bx', false],
    ['[\\]]', ']', true],
    ['[\\]]', 'x', false],
    ['[a-\\]]', 'Z', false],
    ['[a-\\]]', ']', false],
    ['[a-\\]]', 'a', true],
    ['[z-a]', 'b', false],
    ['[z-a]', 'z', true],
    ['[!z-a]', 'b', true],
    ['[!z-a]', 'z', false],
    ['[.]yaml', '.yaml', true],
    ['[.]yaml', 'xyaml', false],
    ['[é]', 'é', true],
    // escapes
    ['\\*.yaml', '*.yaml', true],
    ['\\*.yaml', 'a.yaml', false],
    ['\\[ab].yaml', '[ab].yaml', true],
    ['\\[ab].yaml', 'a.yaml', false],
    ['{a\\,b,c}.yaml', 'a,b.yaml', true],
    ['{a\\,b,c}.yaml', 'c.yaml', true],
    ['{a\\,b,c}.yaml', 'b.yaml', false],
    ['a\\b', 'ab', true],
    // alternatives, nested, with classes and `**` inside
    ['{a,b{c,d}}.yaml', 'bd.yaml', true],
    ['{a,b{c,d}}.yaml', 'b.yaml', false],
    ['{x/**/c,y}.yaml', 'x/p/q/c.yaml', true],
    ['{[ab],c}.yaml', 'b.yaml', true],
    ['{manifests,deploy}/**/*.yaml', 'deploy/a/b.yaml', true],
    ['{manifests,deploy}/**/*.yaml', 'deploy/b.yaml', true],
    // `**` only spans directories as a whole segment; `a/**` is `a` too
    ['a/**', 'a', true],
    ['a/**', 'a/b/c', true],
    ['a/**', 'ab', false],
    ['a/**/', 'a', true],
    ['**', 'a/b', true],
    ['**/x', 'x', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a/**.yaml', 'a/b.yaml', true],
    ['a/**.yaml', 'a/x/b.yaml', false],
    ['x**/y', 'xa/y', true],
    ['x**/y', 'xa/b/y', false],
    ['x**/y', 'y', false],
    // ... also as the end of an alternative that ends the pattern
    ['{a/**,b}', 'a/x/y', true],
    ['{a/**,b}', 'a', true],
    ['{a/**,b}', 'b', true],
    ['{a/**,b}', 'b/x', false],
    ['{b,a/**}', 'a/x/y', true],
    ['{{a/**},c}', 'a/x', true],
    ['{a/**,b}.yaml', 'a/x.yaml', true],
    ['{a/**,b}.yaml', 'a/x/y.yaml', false],
  ])('as doublestar: %s matches %s: %s', (glob, path, want) => {
    expect(globToRegExp(glob).test(path)).toBe(want);
  });

  it('reads a malformed pattern literally rather than throwing (globProblem refuses it in configs)', () => {
    expect(globToRegExp('[ab').test('[ab')).toBe(true);
    expect(globToRegExp('[]').test('[]')).toBe(true);
    expect(globToRegExp('a\\').test('a\\')).toBe(true);
    expect(() => globToRegExp('{a,b')).not.toThrow();
    expect(globToRegExp('a}').test('a}')).toBe(true);
  });
});

describe('globProblem', () => {
  it.each([
    ['**/*.{yaml,yml,json}', undefined],
    ['[ab]/*.yaml', undefined],
    ['[\\]]/*.yaml', undefined],
    ['\\[a/*.yaml', undefined],
    ['**/*.{yaml,yml', 'a "{" is never closed with "}"'],
    ['a}.yaml', '"}" at position 2 closes nothing'],
    ['[ab/*.yaml', '"[" at position 1 is never closed with "]"'],
    ['[a\\]', '"[" at position 1 is never closed with "]"'],
    ['[]a]', '"[" at position 1 starts an empty character class (write "\\]" for "]")'],
    ['x[!]', '"[" at position 2 starts an empty character class (write "\\]" for "]")'],
    ['a\\', '"\\" at the end escapes nothing'],
  ])('%s: %s', (glob, problem) => {
    expect(globProblem(glob)).toBe(problem);
  });
});
