import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { VerdictError } from '../../shared/errors.js';

const run = promisify(execFile);

// The configuration project is a git repository on disk. Verdict reads
// committed content only, from the default branch (what HEAD points to), so a
// half-edited working tree never reaches an agent.

/** Runs git in `repo` (without overriding safe.directory: git must not trust a repository another user owns); a failure is a VERDICT_GIT with git's first line of stderr. */
export async function git(repo: string, args: string[], encoding: 'utf8' | 'buffer' = 'utf8'): Promise<string | Buffer> {
  try {
    const { stdout } = await run('git', ['-C', repo, ...args], { encoding, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string | Buffer; message: string };
    const detail = String(err.stderr ?? err.message)
      .trim()
      .split('\n')[0];
    throw new VerdictError('VERDICT_GIT', `git ${args[0]} in ${repo} failed: ${detail}`);
  }
}

export async function headCommit(repo: string): Promise<string> {
  try {
    return String(await git(repo, ['rev-parse', '--verify', 'HEAD^{commit}'])).trim();
  } catch (e) {
    const why = (e as Error).message;
    const notOwned = notOwnedMessage(repo, why);
    if (notOwned) throw new VerdictError('VERDICT_GIT', notOwned);
    // Gone rather than never made: git init there would start an empty project; the agents need the one that moved.
    // Not found (not unavailable): the agent's GitOps must not take it for a server that is away.
    if (!existsSync(repo)) throw new VerdictError('VERDICT_NOT_FOUND', projectGone(repo));
    throw new VerdictError(
      'VERDICT_GIT',
      `${repo} is not a git repository with a commit on its default branch (${why}); run \`git init\` there and commit .gitlab/agents/<name>/config.yaml`,
    );
  }
}

/** What to do when the configuration project `repo` is no longer on disk. */
export function projectGone(repo: string): string {
  return `configuration project ${repo} does not exist (moved or deleted?); if it moved, point its agents to the new path with \`verdict agents set-project <agent> <path>\` (\`verdict agents list\` shows each agent's project), or put it back`;
}

/**
 * What to do when git refused `repo` (failure `why`) because another user owns it, or undefined for any other failure. git
 * refuses such a repository with the same exit as a missing one, and must: honouring its .git/config would run its hooks
 * and commands as this user (CVE-2022-24765).
 */
export function notOwnedMessage(repo: string, why: string): string | undefined {
  if (!why.includes('dubious ownership')) return undefined;
  return `${repo} belongs to another user than this server's, and git refuses to read it (${why}); add it to safe.directory in git's global config of the user the server runs as (\`git config --global --add safe.directory ${repo}\`; deploy/server/server.yaml does so with GIT_CONFIG_GLOBAL), or chown it to that user`;
}

/** A file's content at a commit, or undefined when the commit has no such file. */
export async function readAt(repo: string, commit: string, path: string): Promise<Buffer | undefined> {
  const list = String(await git(repo, ['ls-tree', '-z', '--name-only', commit, '--', path]));
  if (!list.split('\0').includes(path)) return undefined;
  return (await git(repo, ['cat-file', 'blob', `${commit}:${path}`], 'buffer')) as Buffer;
}

export async function listFiles(repo: string, commit: string): Promise<string[]> {
  return String(await git(repo, ['ls-tree', '-r', '-z', '--name-only', commit]))
    .split('\0')
    .filter(Boolean);
}

/** The commit a revision (HEAD, refs/heads/x, refs/tags/x, a sha) names, or undefined when it names none. */
export async function resolveCommit(repo: string, rev: string): Promise<string | undefined> {
  try {
    return String(await git(repo, ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`])).trim() || undefined;
  } catch (e) {
    // --quiet: a missing revision exits 1 with no output; anything else is the repository's problem.
    if ((e as Error).message.endsWith('failed: ')) return undefined;
    throw e;
  }
}

export interface TreeEntry {
  path: string;
  /** blob, tree (never with -r) or commit (a submodule). */
  type: string;
  oid: string;
  /** Bytes; -1 for entries that are not blobs. */
  size: number;
}

/** Every entry of a commit's tree, recursively, with blob sizes: limits are checked before anything is read. */
export async function listTree(repo: string, commit: string): Promise<TreeEntry[]> {
  const out = String(await git(repo, ['ls-tree', '-r', '-l', '-z', commit]));
  return out
    .split('\0')
    .filter(Boolean)
    .map((line) => {
      // "<mode> SP <type> SP <oid> SP+ <size> TAB <path>"
      const tab = line.indexOf('\t');
      const [, type, oid, size] = line.slice(0, tab).split(/ +/);
      return { path: line.slice(tab + 1), type: type!, oid: oid!, size: size === '-' ? -1 : Number(size) };
    });
}

/** Blobs by object id, in order, with one `git cat-file --batch` process (one process per file is slow for 1,000 files). */
export function readBlobs(repo: string, oids: readonly string[]): Promise<Buffer[]> {
  if (oids.length === 0) return Promise.resolve([]);
  return new Promise((resolve, reject) => {
    const p = spawn('git', ['-C', repo, 'cat-file', '--batch'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => chunks.push(d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', (e) => reject(new VerdictError('VERDICT_GIT', `git cat-file in ${repo} failed: ${e.message}`)));
    p.on('close', (code) => {
      if (code !== 0) return reject(new VerdictError('VERDICT_GIT', `git cat-file in ${repo} failed: ${stderr.trim().split('\n')[0] ?? `exit ${code}`}`));
      // Each answer: "<oid> <type> <size>\n<content>\n", or "<oid> missing\n".
      const all = Buffer.concat(chunks);
      const blobs: Buffer[] = [];
      let at = 0;
      for (const oid of oids) {
        const nl = all.indexOf(0x0a, at);
        const head = all.subarray(at, nl).toString('utf8').split(' ');
        if (head[1] === 'missing' || nl < 0) return reject(new VerdictError('VERDICT_GIT', `git cat-file in ${repo}: object ${oid} is missing`));
        const size = Number(head[2]);
        blobs.push(all.subarray(nl + 1, nl + 1 + size));
        at = nl + 1 + size + 1;
      }
      resolve(blobs);
    });
    // git exiting early closes the pipe; its exit code and stderr, reported on
    // close, say why, so the EPIPE here must not become an uncaught error.
    p.stdin.on('error', () => {});
    p.stdin.end(`${oids.join('\n')}\n`);
  });
}
