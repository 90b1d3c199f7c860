import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const PICK = 'give --data-dir (data_dir in a server config file) a directory this user can write to';

function code(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException).code;
}

function cannot(dir: string, why: string, verb = 'create'): Error {
  return new Error(`cannot ${verb} the data directory ${dir}: ${why}; ${PICK}`);
}

/** Why mkdir of `path`, whose parent exists as a directory, failed, in words. */
function mkdirProblem(path: string, e: unknown): string {
  switch (code(e)) {
    case 'EACCES':
    case 'EPERM':
      return `this user may not create ${path}`;
    case 'EROFS':
      return `${dirname(path)} is on a read-only file system`;
    case 'ENOSPC':
      return `the file system of ${dirname(path)} is full`;
    // procfs and sysfs answer ENOENT for a new name under an existing directory.
    case 'ENOENT':
      return `the file system of ${dirname(path)} does not allow new directories`;
    default:
      return (e as Error).message;
  }
}

/**
 * Makes the data directory `dir` (mode 0700) and the missing directories above it, one
 * level at a time. Returns whether `dir` already existed. Node's mkdir { recursive: true } loops forever where a
 * file system answers ENOENT for a new name under an existing directory
 * (procfs: /proc/x), so the walk here is bounded by the path's depth.
 */
export function makeDataDir(dir: string): boolean {
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    let isDir: boolean;
    try {
      isDir = statSync(at).isDirectory();
    } catch (e) {
      const c = code(e);
      if (c !== 'ENOENT' && c !== 'ENOTDIR') throw cannot(dir, `cannot read ${at}: ${(e as Error).message}`);
      const up = dirname(at);
      if (up === at) throw cannot(dir, `${at} does not exist`);
      missing.push(at);
      at = up;
      continue;
    }
    if (!isDir) throw cannot(dir, `${at} is a file, not a directory`);
    break;
  }
  if (missing.length === 0) {
    try {
      accessSync(at, constants.W_OK);
    } catch {
      throw cannot(dir, 'this user may not write to it', 'use');
    }
    return true;
  }
  for (const path of missing.reverse()) {
    try {
      // Only this user: the database holds webhook URLs with their secrets, feed tokens and alerts.
      mkdirSync(path, { mode: 0o700 });
    } catch (e) {
      // Another process made it in between: fine if it is a directory.
      if (code(e) === 'EEXIST' && statSync(path, { throwIfNoEntry: false })?.isDirectory()) continue;
      throw cannot(dir, mkdirProblem(path, e));
    }
  }
  return false;
}
