import { existsSync, realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { VerdictError } from '../../shared/errors.js';
import { configPath } from '../config/agent-config-path.js';
import { git, headCommit, notOwnedMessage, readAt } from '../config/git-project.js';

// A configuration project is a git repository on the server's disk, read by the server with git-project.ts; a URL, a
// directory that is not the top of a repository or one git refuses to read would register an agent that never gets a
// configuration, and the server would say so only in its log, later. The check runs git the same way, so it refuses what
// the server could not read.

/** git's answer, or undefined when git fails; a repository git refuses for its owner is refused with what to do. */
async function ask(dir: string, args: string[]): Promise<string | undefined> {
  try {
    return String(await git(dir, args)).trim();
  } catch (e) {
    const notOwned = notOwnedMessage(dir, (e as Error).message);
    if (notOwned) refuse(`configuration project ${notOwned}`);
    return undefined;
  }
}

function refuse(message: string): never {
  throw new VerdictError('VERDICT_BAD_REQUEST', message);
}

/** A URL or scp-like `git@host:path`: where a repository is served, not a path on the server's disk. */
export function isRepositoryUrl(given: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(given) || /^[^/]+@[^/:]+:/.test(given);
}

/**
 * The absolute path of `given` once it is known to be the top of a git repository (or a bare one), with notes when its
 * default branch has no commit or no config.yaml for `agent` yet; otherwise a VERDICT_BAD_REQUEST saying how to make one.
 */
export async function checkConfigProject(given: string, agent: string): Promise<{ path: string; notes: string[] }> {
  const file = configPath(agent);
  const howTo = `\`git init\` there, then commit the agent's configuration at ${file} (\`git add ${file} && git commit\`)`;
  if (isRepositoryUrl(given))
    refuse(
      `configuration project ${given} is a URL; it must be the path of a git repository on the server's disk: clone it there (\`git clone ${given} <dir>\`) and pass that path`,
    );
  const path = resolve(given);
  if (!existsSync(path)) refuse(`configuration project ${path} does not exist; pass the path of a git repository: ${howTo}`);
  const bare = await ask(path, ['rev-parse', '--is-bare-repository']);
  if (bare === undefined) refuse(`configuration project ${path} is not a git repository; ${howTo}`);
  const top = bare === 'true' ? await ask(path, ['rev-parse', '--absolute-git-dir']) : await ask(path, ['rev-parse', '--show-toplevel']);
  if (top === undefined) refuse(`configuration project ${path} is inside a git repository's .git directory; pass the repository's top directory`);
  if (realpathSync(top) !== realpathSync(path))
    refuse(
      `configuration project ${path} is inside the git repository ${top}, not its top; pass ${top} (the agent's configuration is read from ${file} there)`,
    );
  // Read as the server will read it (git-project.ts): its default branch's commit, and the file in it.
  const notes: string[] = [];
  const head = await headCommit(path).catch(() => undefined);
  if (head === undefined) notes.push(`${path} has no commit yet; the agent gets its configuration once ${file} is committed to the default branch`);
  else if ((await readAt(path, head, file)) === undefined)
    notes.push(`${path} has no ${file} on its default branch yet; the agent gets its configuration once it is committed there`);
  return { path, notes };
}
