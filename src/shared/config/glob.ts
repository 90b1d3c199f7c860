// Glob patterns as the GitLab agent's config uses them for paths, read as
// doublestar (v4, Match) reads them:
// - `*` is any run of characters but `/`; `?` is one character but `/`;
// - `**` as a whole path segment (`**/`, `/**/`, `/**`) is zero or more
//   directories; anywhere else it is `*`; `a/**` also matches `a`;
// - `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]`: one character in (or not in) the
//   class; a class is never empty (`[]` and `[!]` are errors, so `]` in a class
//   is written `\]`); inside it `\x` is x, and `-` first or last is itself;
// - `{a,b}` is alternation (nesting allowed);
// - `\x` is x (`\*`, `\[`, `\{`, `\,`).
// A malformed pattern (see globProblem) never throws here: what cannot be read
// as above is taken literally; configs refuse such patterns with globProblem.

const SPECIAL = /[.+^$()|[\]\\{}*?/]/g;
const lit = (c: string) => c.replace(SPECIAL, '\\$&');
const classLit = (c: string) => c.replace(/[\\\][^-]/g, '\\$&');

/** The regular expression body of a class at glob[i] === '[', and where it ends, or undefined if malformed. */
function charClass(glob: string, i: number): { re: string; end: number } | undefined {
  const cps = Array.from(glob.slice(i + 1));
  let j = 0;
  const negate = cps[j] === '!' || cps[j] === '^';
  if (negate) j++;
  if (j >= cps.length || cps[j] === ']') return undefined;
  let body = '';
  let last: string | undefined;
  while (j < cps.length && cps[j] !== ']') {
    let c = cps[j++]!;
    if (last !== undefined && c === '-' && j < cps.length && cps[j] !== ']') {
      let hi = cps[j++]!;
      if (hi === '\\' && j < cps.length) hi = cps[j++]!;
      // A range whose ends are the wrong way round matches its first end only, as in doublestar.
      body += last.codePointAt(0)! <= hi.codePointAt(0)! ? `${classLit(last)}-${classLit(hi)}` : classLit(last);
      last = undefined;
      continue;
    }
    if (c === '\\' && j < cps.length) c = cps[j++]!;
    if (last !== undefined) body += classLit(last);
    last = c;
  }
  if (j >= cps.length) return undefined;
  if (last !== undefined) body += classLit(last);
  const end = i + 1 + cps.slice(0, j + 1).join('').length;
  return { re: body === '' ? (negate ? '[^]' : '[]') : `[${negate ? '^' : ''}${body}]`, end };
}

/**
 * Whether nothing follows glob[i] in the pattern doublestar matches with, which spells each `{a,b}` out:
 * only the ends of the open alternatives (`}`, or `,` and the rest of the group) and of the pattern.
 */
function endsAfter(glob: string, i: number, depth: number): boolean {
  while (i < glob.length) {
    const c = glob[i];
    if (c === '}' && depth > 0) {
      depth--;
      i++;
    } else if (c === ',' && depth > 0) {
      // To this group's closing brace.
      let open = 1;
      for (i++; i < glob.length && open > 0; i++) {
        if (glob[i] === '\\') i++;
        else if (glob[i] === '{') open++;
        else if (glob[i] === '}') open--;
      }
      depth--;
    } else return false;
  }
  return true;
}

export function globToRegExp(glob: string): RegExp {
  let re = '';
  // Whether the next character starts a path segment (where `**` means directories), and the same at each open `{`.
  let segStart = true;
  const braces: boolean[] = [];
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (segStart && endsAfter(glob, i + 1, braces.length)) {
          re += '.*';
          continue;
        }
        if (segStart && glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
          continue;
        }
      }
      re += '[^/]*';
      segStart = false;
    } else if (c === '?') {
      re += '[^/]';
      segStart = false;
    } else if (c === '[') {
      const cls = charClass(glob, i);
      if (cls) {
        re += cls.re;
        i = cls.end - 1;
      } else re += '\\[';
      segStart = false;
    } else if (c === '{') {
      braces.push(segStart);
      re += '(?:';
    } else if (c === '}' && braces.length) {
      braces.pop();
      re += ')';
      segStart = false;
    } else if (c === ',' && braces.length) {
      re += '|';
      segStart = braces[braces.length - 1]!;
    } else if (c === '/') {
      // `a/**` and `a/**/` at the end of the pattern (or of an alternative that ends it) match the directory `a` too.
      if (glob.startsWith('**', i + 1) && endsAfter(glob, i + 3, braces.length)) {
        re += '(?:/.*)?';
        i += 2;
        continue;
      }
      if (glob.startsWith('**/', i + 1) && endsAfter(glob, i + 4, braces.length)) {
        re += '(?:/(?:.*/)?)?';
        i += 3;
        continue;
      }
      re += '/';
      segStart = true;
    } else if (c === '\\' && i + 1 < glob.length) {
      const e = Array.from(glob.slice(i + 1))[0]!;
      re += lit(e);
      i += e.length;
      segStart = e === '/';
    } else {
      re += lit(c);
      segStart = false;
    }
  }
  re += ')'.repeat(braces.length);
  return new RegExp(`^${re}$`, 'u');
}

/**
 * Why a glob cannot match as meant (unclosed `{` or `[`, a stray `}`, an empty
 * class, a trailing `\`), or undefined: the checks of doublestar's
 * ValidatePattern. The GitLab agent's server refuses such globs; so does Verdict.
 */
export function globProblem(glob: string): string | undefined {
  let braces = 0;
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '\\') {
      if (++i >= glob.length) return '"\\" at the end escapes nothing';
    } else if (c === '{') braces++;
    else if (c === '}' && --braces < 0) return `"}" at position ${i + 1} closes nothing`;
    else if (c === '[') {
      const start = i;
      let j = i + 1;
      if (glob[j] === '!' || glob[j] === '^') j++;
      if (j < glob.length && glob[j] === ']') return `"[" at position ${start + 1} starts an empty character class (write "\\]" for "]")`;
      for (; j < glob.length && glob[j] !== ']'; j++) if (glob[j] === '\\') j++;
      if (j >= glob.length) return `"[" at position ${start + 1} is never closed with "]"`;
      i = j;
    }
  }
  return braces > 0 ? 'a "{" is never closed with "}"' : undefined;
}
