import { describe, expect, it } from 'vitest';
import { configIssues } from '../../../test/helpers/server-config.js';
import { exactlyOne, field, obj, str } from './schema.js';

const ref = obj({ ref: field(exactlyOne({ tag: field(str()), branch: field(str()) }, 'ref: {branch: main}')) });

const errorsOf = (yaml: string) => configIssues(yaml, ref);

describe('exactlyOne', () => {
  it('names a misspelt form and the one meant, rather than saying none is set', () => {
    expect(errorsOf('ref:\n  brnach: main\n')).toEqual(['2: ref.brnach: unknown key; known keys: tag, branch (did you mean "branch"?)']);
    expect(errorsOf('ref: {tga: v1, branch: }\n')).toEqual(['1: ref.tga: unknown key; known keys: tag, branch (did you mean "tag"?)']);
    expect(errorsOf('ref: {commit: abc}\n')).toEqual(['1: ref.commit: unknown key; known keys: tag, branch']);
  });

  it('says which forms there are when none is set, and which to drop when two are', () => {
    expect(errorsOf('ref: {}\n')).toEqual(['1: ref: set exactly one of tag, branch (none is set); e.g. ref: {branch: main}']);
    expect(errorsOf('ref:\n  branch:\n')).toEqual(['1: ref: set exactly one of tag, branch (branch has no value); e.g. ref: {branch: main}']);
    expect(errorsOf('ref:\n  tag: v1\n  branch: main\n')).toEqual(['3: ref: set only one of tag, branch; found tag and branch']);
    expect(errorsOf('ref: {branch: main}\n')).toEqual([]);
  });
});
