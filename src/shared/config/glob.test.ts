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
    ['a.yaml', 'aXyaml', false],
  ])('%s matches %s: %s', (glob, path, want) => {
    expect(globToRegExp(glob).test(path)).toBe(want);
  });
});

describe('globProblem', () => {
  it.each([
    ['**/*.{yaml,yml,json}', undefined],
    ['[ab]/*.yaml', undefined],
    ['**/*.{yaml,yml', 'a "{" is never closed with "}"'],
    ['a}.yaml', '"}" at position 2 closes nothing'],
    ['[ab/*.yaml', '"[" at position 1 is never closed with "]"'],
  ])('%s: %s', (glob, problem) => {
    expect(globProblem(glob)).toBe(problem);
  });
});
