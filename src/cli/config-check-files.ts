import { spawnSync } from 'node:child_process';
import { type Dirent, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import type { ProjectFileSource } from '../server/config/agent-config-loader.js';
import { git } from '../server/config/git-project.js';

// The files of a configuration project as `verdict config check` sees them, for the
// server's own reader (readProjectFiles): in a git work tree, git's index, which is
// what the next commit holds (a pre-commit hook checks what is being committed) and,
// once committed, exactly the tree the server lists; untracked and ignored files are
// not in it, and a symlink is its target's path, as git stores it. Outside git, the
// directory as it is, read the same way.

/** Where `root`'s files come from, and how to say so ("tracked by git in" or "in"). */
export function projectFileSource(root: string): { source: ProjectFileSource; where: string } {
  const inside = spawnSync('git', ['-C', root, 'rev-parse', '--is-inside-work-tree'], { encoding: 'utf8' });
  if (inside.status === 0 && inside.stdout.trim() === 'true') return { source: indexFiles(root), where: 'tracked by git in' };
  return { source: directoryFiles(root), where: 'in' };
}

const GITLINK = '160000';

/** The files of git's index below `root` (relative to it: git lists them so when run there), in git's order. */
function indexFiles(root: string): ProjectFileSource {
  let entries: Promise<Map<string, string>> | undefined;
  const index = () => {
    entries ??= (async () => {
      const blobs = new Map<string, string>();
      // "<mode> <object> <stage>\t<path>"; a conflicted path has stages 1-3: the first is kept, as it sorts first.
      for (const line of String(await git(root, ['ls-files', '-s', '-z'])).split('\0')) {
        const tab = line.indexOf('\t');
        if (tab < 0) continue;
        const [mode, object] = line.slice(0, tab).split(' ');
        const path = line.slice(tab + 1);
        // A submodule is a commit, not a file of this project.
        if (mode !== GITLINK && !blobs.has(path)) blobs.set(path, object!);
      }
      return blobs;
    })();
    return entries;
  };
  return {
    list: async () => [...(await index()).keys()],
    read: async (path) => {
      const object = (await index()).get(path);
      // A symlink's blob (mode 120000) holds the path it points to: what the server reads at the commit.
      return object === undefined ? undefined : ((await git(root, ['cat-file', 'blob', object], 'buffer')) as Buffer);
    },
  };
}

/**
 * The files below `root`, .git left out, in the order git would list them (by bytes, a directory's name as if it
 * ended in "/"), a symlink being its target's path as git would store it.
 */
function directoryFiles(root: string): ProjectFileSource {
  const links = new Set<string>();
  const list = async () => {
    const out: string[] = [];
    const key = (e: Dirent) => Buffer.from(e.isDirectory() ? `${e.name}/` : e.name);
    const walk = (dir: string, rel: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => Buffer.compare(key(a), key(b)))) {
        const r = rel ? posix.join(rel, e.name) : e.name;
        if (e.isDirectory()) {
          if (e.name !== '.git') walk(join(dir, e.name), r);
        } else if (e.isFile()) out.push(r);
        else if (e.isSymbolicLink()) {
          links.add(r);
          out.push(r);
        }
      }
    };
    walk(root, '');
    return out;
  };
  return {
    list,
    read: async (path) => (links.has(path) ? Buffer.from(readlinkSync(join(root, path))) : readFileSync(join(root, path))),
  };
}
