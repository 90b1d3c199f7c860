import type { GitRefCF } from '../../gen/verdict/gitops.js';
import { VerdictError } from '../../shared/errors.js';

// A manifest project's ref (branch | tag | commit | the default branch) as the
// git revision the server reads, and as people name it in messages.

export interface RefSpec {
  /** What `git rev-parse` reads. */
  rev: string;
  /** As users wrote it: "branch main", "tag v1", "commit 1a2b3c", "the default branch". */
  name: string;
  /** A commit never moves: it is sent once and not polled again. */
  pinned: boolean;
}

// Names git itself would refuse, and anything that could read as an option.
const BAD_REF = /(^[-/.])|\.\.|[\s~^:?*[\\]|@\{|\/$|\.lock$|\.$/;

export function refSpec(ref: GitRefCF | undefined): RefSpec {
  const r = ref?.ref;
  if (!r) return { rev: 'HEAD', name: 'the default branch', pinned: false };
  if (r.$case === 'commit') {
    if (!/^[0-9a-f]{4,64}$/i.test(r.value)) throw new VerdictError('VERDICT_BAD_REQUEST', `commit ${JSON.stringify(r.value)} is not a commit id (hexadecimal)`);
    return { rev: r.value.toLowerCase(), name: `commit ${r.value}`, pinned: true };
  }
  if (r.value === '' || BAD_REF.test(r.value))
    throw new VerdictError('VERDICT_BAD_REQUEST', `${r.$case} ${JSON.stringify(r.value)} is not a valid git ${r.$case} name`);
  return r.$case === 'branch'
    ? { rev: `refs/heads/${r.value}`, name: `branch ${r.value}`, pinned: false }
    : { rev: `refs/tags/${r.value}`, name: `tag ${r.value}`, pinned: false };
}
