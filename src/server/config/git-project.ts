import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

// The configuration project is a git repository on disk. Verdict reads
// committed content only, from the default branch (what HEAD points to), so a
// half-edited working tree never reaches an agent.

export class GitError extends Error {
  readonly code = 'VERDICT_GIT';
}

async function git(repo: string, args: string[], encoding: 'utf8' | 'buffer' = 'utf8'): Promise<string | Buffer> {
  try {
    const { stdout } = await run('git', ['-C', repo, ...args], { encoding, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (e) {
    const err = e as { stderr?: string | Buffer; message: string };
    const detail = String(err.stderr ?? err.message).trim().split('\n')[0];
    throw new GitError(`git ${args[0]} in ${repo} failed: ${detail}`);
  }
}

export async function headCommit(repo: string): Promise<string> {
  try {
    return String(await git(repo, ['rev-parse', '--verify', 'HEAD^{commit}'])).trim();
  } catch (e) {
    const why = (e as Error).message;
    // git refuses a repository another user owns with the same exit as a missing one.
    if (why.includes('dubious ownership')) {
      throw new GitError(`${repo} belongs to another user than this server's, and git refuses to read it (${why}); add it to safe.directory in git's global config (deploy/server/server.yaml does so with GIT_CONFIG_GLOBAL)`);
    }
    throw new GitError(`${repo} is not a git repository with a commit on its default branch (${why}); run \`git init\` there and commit .gitlab/agents/<name>/config.yaml`);
  }
}

/** A file's content at a commit, or undefined when the commit has no such file. */
export async function readAt(repo: string, commit: string, path: string): Promise<Buffer | undefined> {
  const list = String(await git(repo, ['ls-tree', '-z', '--name-only', commit, '--', path]));
  if (!list.split('\0').includes(path)) return undefined;
  return (await git(repo, ['cat-file', 'blob', `${commit}:${path}`], 'buffer')) as Buffer;
}

export async function listFiles(repo: string, commit: string): Promise<string[]> {
  return String(await git(repo, ['ls-tree', '-r', '-z', '--name-only', commit])).split('\0').filter(Boolean);
}
