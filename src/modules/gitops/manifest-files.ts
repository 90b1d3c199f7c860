import { globProblem, globToRegExp } from '../../shared/config/glob.js';
import { listTree, readBlobs } from '../../server/config/git-project.js';
import { VerdictError } from '../../shared/errors.js';

// Which files of a manifest project the agent gets at a commit, with the
// original server's rules and limits: globs are visited in order (a leading
// "/" stripped), files under a dot-directory are skipped, a file matched by two
// globs is an error, and at most 1000 files, 5 MiB per file and 20 MiB in all.

export const MAX_PATHS = 100;
export const MAX_FILES = 1000;
export const MAX_FILE_BYTES = 5 * 1024 * 1024;
export const MAX_TOTAL_BYTES = 20 * 1024 * 1024;
export const DEFAULT_GLOB = '**/*.{yaml,yml,json}';

/** A problem with what the project or its globs hold (VERDICT_MANIFEST_FILES): the user fixes it (FAILED_PRECONDITION), a retry will not. */
function fileError(message: string): VerdictError {
  return new VerdictError('VERDICT_MANIFEST_FILES', `manifest file: ${message}`);
}

export interface SelectedFile {
  path: string;
  oid: string;
  size: number;
}

export interface Selection {
  files: SelectedFile[];
  /** Files matched by a glob (the original's "files visited"). */
  visited: number;
}

/** Whether a file lies in a directory whose name starts with a dot (.gitlab/, .github/). */
function inHiddenDir(path: string): boolean {
  const dirs = path.split('/').slice(0, -1);
  return dirs.some((d) => d.startsWith('.'));
}

export async function selectFiles(repo: string, commit: string, globs: readonly string[]): Promise<Selection> {
  const entries = (await listTree(repo, commit)).filter((e) => !inHiddenDir(e.path));
  const seen = new Set<string>();
  const files: SelectedFile[] = [];
  let remaining = MAX_TOTAL_BYTES;
  let visited = 0;
  for (const raw of globs.length ? globs : [DEFAULT_GLOB]) {
    const glob = raw.replace(/^\/+/, '');
    const bad = globProblem(glob);
    if (bad) throw fileError(`glob ${raw} match failed: syntax error in pattern (${bad})`);
    // Read as doublestar reads it: classes ([a-z], [!a]), escapes, {a,b} and ** (src/shared/config/glob.ts).
    const re = globToRegExp(glob);
    for (const e of entries) {
      if (!re.test(e.path)) continue;
      if (seen.has(e.path)) throw fileError(`path visited more than once: ${e.path}`);
      seen.add(e.path);
      if (visited === MAX_FILES) throw fileError(`maximum number of files limit reached: ${MAX_FILES}`);
      visited++;
      if (e.type !== 'blob') throw fileError(`UnexpectedTreeEntryType: file is not a usual file: ${e.path}`);
      if (e.size > Math.min(MAX_FILE_BYTES, remaining)) {
        const which =
          e.size > MAX_FILE_BYTES
            ? `over the ${MAX_FILE_BYTES}-byte limit per file`
            : `over the ${MAX_TOTAL_BYTES}-byte limit per project with the files before it`;
        throw fileError(`FileTooBig: file is too big: ${e.path} (${e.size} bytes, ${which})`);
      }
      remaining -= e.size;
      files.push({ path: e.path, oid: e.oid, size: e.size });
    }
  }
  return { files, visited };
}

/** The selected files' contents, in selection order. */
export async function readFiles(repo: string, files: readonly SelectedFile[]): Promise<Buffer[]> {
  return readBlobs(
    repo,
    files.map((f) => f.oid),
  );
}
