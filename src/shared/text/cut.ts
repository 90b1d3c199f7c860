/**
 * The first `max` UTF-16 units of `s`, one fewer when the cut would split a
 * surrogate pair: half an emoji is not valid Unicode, and strict JSON parsers
 * (GitLab's, for one) refuse the escaped lone surrogate it turns into.
 */
export function cutText(s: string, max: number): string {
  if (s.length <= max) return s;
  const c = s.charCodeAt(max - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? max - 1 : max);
}

/**
 * At most `max` characters (code points, as Ruby and Slack count them), never
 * cutting a surrogate pair in half; a cut text ends in "…".
 */
export function clipChars(s: string, max: number): string {
  if (s.length <= max) return s;
  const cps = Array.from(s);
  return cps.length <= max ? s : `${cps.slice(0, max - 1).join('')}…`;
}
