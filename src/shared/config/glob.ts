// Glob patterns as the GitLab agent's config uses them for paths: `**` spans
// directories, `*` and `?` stay within one, `{a,b}` is alternation.
export function globToRegExp(glob: string): RegExp {
  let re = '';
  let depth = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') re += '[^/]';
    else if (c === '{') {
      depth++;
      re += '(?:';
    } else if (c === '}' && depth > 0) {
      depth--;
      re += ')';
    } else if (c === ',' && depth > 0) re += '|';
    else re += c.replace(/[.+^$()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/**
 * Why a glob cannot match as meant (unclosed `{` or `[`, a stray `}`), or
 * undefined. The GitLab agent's server refuses such globs; so does Verdict.
 */
export function globProblem(glob: string): string | undefined {
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') i++;
    else if (c === '{') braces++;
    else if (c === '}' && --braces < 0) return `"}" at position ${i + 1} closes nothing`;
    else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end < 0) return `"[" at position ${i + 1} is never closed with "]"`;
      i = end;
    }
  }
  return braces > 0 ? 'a "{" is never closed with "}"' : undefined;
}
