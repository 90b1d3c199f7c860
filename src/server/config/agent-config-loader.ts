import type { ProjectFile } from '../../gen/verdict/agent.js';
import { parseAgentConfig, type AgentConfig } from './agent-config.js';
import { globToRegExp } from '../../shared/config/glob.js';
import { ConfigError, type ConfigIssue } from '../../shared/config/schema.js';
import { configPath } from './agent-config-path.js';
import { listFiles, readAt } from './git-project.js';
import { serverModules } from '../modules.js';

/** Limits of the original on the files a module's globs select from a project; `verdict config check` holds files to them too. */
export const PROJECT_FILE_LIMITS = Object.freeze({ files: 1000, fileBytes: 5 * 1024 * 1024, totalBytes: 20 * 1024 * 1024 });
const { files: MAX_FILES, fileBytes: MAX_FILE_BYTES, totalBytes: MAX_TOTAL_BYTES } = PROJECT_FILE_LIMITS;

/**
 * Where a project's files come from: a commit (the server), or git's index or a directory (`verdict config check`),
 * so both select and read them by the one code path below.
 */
export interface ProjectFileSource {
  /** Every file, relative to the project's root with "/", in git's order. */
  list(): Promise<string[]>;
  /** A file's content (a symlink's is its target, as git stores it), or undefined when it has none. */
  read(path: string): Promise<Buffer | undefined>;
}

/** The files of a commit, as git stores them (a symlink is a blob holding its target). */
export function commitFiles(repo: string, commitId: string): ProjectFileSource {
  return { list: () => listFiles(repo, commitId), read: (path) => readAt(repo, commitId, path) };
}

export interface LoadedConfiguration {
  commitId: string;
  config: AgentConfig;
  warnings: ConfigIssue[];
  files: ProjectFile[];
}

/**
 * An agent's config.yaml at a commit, validated, or why there is none: `missing` (no such file: callers may treat
 * that as no configuration, unlike a broken one) or `invalid` (its problems, file:line: path). Frozen all the way
 * down: every reader of the commit shares it.
 */
type AgentConfigAt = { state: 'valid'; config: AgentConfig; warnings: ConfigIssue[] } | { state: 'missing' | 'invalid'; error: ConfigError };

// Older reads kept besides each agent's latest: commits an agent is moving away from, or is being sent. One evicted is
// read again from git, not lost; a commit never changes, so a kept read is never stale.
const READS_KEPT = 512;

/**
 * A reader of config.yaml by repository, agent and commit: every reader of a commit (the configuration stream,
 * ci_access decisions, GitOps' project lists, the agents API) shares one git read and one parse. Each agent's latest
 * read is always kept, however many agents there are (the agents API reads them all in turn, which would cycle a
 * bounded cache and miss every time); the `limit` older reads besides, least recently used first out. A read git
 * failed at is not kept, so the next call tries git again.
 */
export function agentConfigReader(limit: number): (repo: string, agentName: string, commitId: string) => Promise<AgentConfigAt> {
  const latest = new Map<string, { commitId: string; read: Promise<AgentConfigAt> }>();
  const older = new Map<string, Promise<AgentConfigAt>>();
  const keep = (key: string, read: Promise<AgentConfigAt>) => {
    older.set(key, read);
    if (older.size > limit) older.delete(older.keys().next().value as string);
  };
  return (repo, agentName, commitId) => {
    const agent = JSON.stringify([repo, agentName]);
    const now = latest.get(agent);
    if (now?.commitId === commitId) return now.read;
    const key = JSON.stringify([repo, agentName, commitId]);
    let read = older.get(key);
    // A Map iterates in insertion order: taking an entry out and putting it back makes it the most recently used.
    if (read) older.delete(key);
    else {
      const started = readOnce(repo, agentName, commitId);
      started.catch(() => {
        if (latest.get(agent)?.read === started) latest.delete(agent);
        if (older.get(key) === started) older.delete(key);
      });
      read = started;
    }
    // The agent's previous latest becomes an older read; this one its latest.
    if (now) keep(JSON.stringify([repo, agentName, now.commitId]), now.read);
    latest.set(agent, { commitId, read });
    return read;
  };
}

/** Reads and validates config.yaml alone (not the files its blocks select). Rejects only when git cannot be read (VERDICT_GIT). */
export const readAgentConfig = agentConfigReader(READS_KEPT);

async function readOnce(repo: string, agentName: string, commitId: string): Promise<AgentConfigAt> {
  const path = configPath(agentName);
  const data = await readAt(repo, commitId, path);
  if (!data) {
    const message = `file not found at commit ${commitId.slice(0, 12)}; commit it to the default branch of ${repo}`;
    return deepFreeze({ state: 'missing', error: new ConfigError([{ file: path, path: '', line: 0, message }]) });
  }
  try {
    const { value: config, warnings } = parseAgentConfig(data.toString('utf8'), path);
    return deepFreeze({ state: 'valid', config, warnings });
  } catch (e) {
    if (e instanceof ConfigError) return deepFreeze({ state: 'invalid', error: e });
    throw e;
  }
}

/** A change to a shared read would show in every other reader of the commit: it throws instead (ESM is strict). */
function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** Reads, validates and resolves an agent's configuration at a commit. Throws ConfigError. */
export async function loadAgentConfiguration(repo: string, agentName: string, commitId: string): Promise<LoadedConfiguration> {
  const read = await readAgentConfig(repo, agentName, commitId);
  if (read.state !== 'valid') throw read.error;
  const { config, warnings } = read;
  const path = configPath(agentName);
  const files: ProjectFile[] = [];
  for (const mod of serverModules) {
    const block = config[mod.name];
    if (block === undefined || !mod.projectFiles) continue;
    const { path: key, globs } = (mod.projectFiles as (b: typeof block) => { path: string; globs: string[] })(block);
    if (globs.length) files.push(...(await readProjectFiles(commitFiles(repo, commitId), path, key, globs)));
  }
  return { commitId, config, warnings, files };
}

/**
 * The files `globs` (relative to the project's root, a leading "/" or not) select from `source`, in its order, held to
 * PROJECT_FILE_LIMITS: over one is a ConfigError at `configFile` (`key`) or at the file.
 */
export async function readProjectFiles(source: ProjectFileSource, configFile: string, key: string, globs: string[]): Promise<ProjectFile[]> {
  const files: ProjectFile[] = [];
  const res = globs.map((g) => globToRegExp(g.replace(/^\/+/, '')));
  let total = 0;
  const matched = (await source.list()).filter((f) => res.some((r) => r.test(f)));
  if (matched.length > MAX_FILES) {
    throw new ConfigError([
      { file: configFile, path: key, line: 0, message: `globs select ${matched.length} files, over the limit of ${MAX_FILES}; narrow them` },
    ]);
  }
  for (const f of matched) {
    const content = await source.read(f);
    if (!content) continue;
    if (content.length > MAX_FILE_BYTES) {
      throw new ConfigError([{ file: f, path: '', line: 0, message: `file is ${content.length} bytes, over the ${MAX_FILE_BYTES}-byte limit; split it` }]);
    }
    total += content.length;
    if (total > MAX_TOTAL_BYTES) {
      throw new ConfigError([{ file: configFile, path: key, line: 0, message: `selected files exceed ${MAX_TOTAL_BYTES} bytes in total; narrow the globs` }]);
    }
    files.push({ path: f, data: content });
  }
  return files;
}
