import { spawnSync } from 'node:child_process';
import { type Dirent, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, posix, relative, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ALERT_ANNOTATION } from '../modules/cilium/policy/policy.js';
import { parseProjectPolicies, policyWarningMessages } from '../modules/cilium/policy/parse.js';
import type { CiliumConfig } from '../modules/cilium/config.js';
import { ciliumServer } from '../modules/cilium/server.js';
import { globToRegExp } from '../shared/config/glob.js';

// `verdict config check` for the policy files an agent's cilium block selects:
// read from the configuration project on disk, selected by the globs as the
// server selects them, and parsed by the agent's own parser, so a policy the
// agent would skip is found before it is pushed, with the agent's message.

export interface PolicyFindings {
  /**
   * Globs that select no file, then per policy file in order, by line: policies the agent would skip (the others
   * still apply) as errors, and what it would log as warnings, in its words.
   */
  findings: { kind: 'error' | 'warning'; text: string }[];
  /** One line on what was loaded, for the file's summary. */
  note: string;
}

/**
 * The project's root for an agent config at `file`: the directory holding .gitlab/agents/<name>/config.yaml, else
 * the git work tree the file is in, else its own directory. Shown as the file was given (relative or absolute).
 */
function projectRoot(file: string): string {
  const abs = resolve(file);
  const agentDir = dirname(abs);
  let root: string | undefined;
  if (basename(dirname(agentDir)) === 'agents' && basename(dirname(dirname(agentDir))) === '.gitlab') root = dirname(dirname(dirname(agentDir)));
  else {
    const git = spawnSync('git', ['-C', agentDir, 'rev-parse', '--show-toplevel'], { encoding: 'utf8' });
    root = git.status === 0 && git.stdout.trim() ? git.stdout.trim() : agentDir;
  }
  return isAbsolute(file) ? root : relative(process.cwd(), root) || '.';
}

/**
 * Files below root, as paths relative to it with "/", in the order the server lists a commit's files (git's tree
 * order: by bytes, a directory's name as if it ended in "/"), so the first of two definitions of a policy is the
 * agent's; .git and node_modules left out.
 */
function projectFiles(root: string): string[] {
  const out: string[] = [];
  const key = (e: Dirent) => Buffer.from(e.isDirectory() ? `${e.name}/` : e.name);
  const walk = (dir: string, rel: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => Buffer.compare(key(a), key(b)))) {
      const r = rel ? posix.join(rel, e.name) : e.name;
      if (e.isDirectory()) {
        if (e.name !== '.git' && e.name !== 'node_modules') walk(join(dir, e.name), r);
      } else if (e.isFile()) out.push(r);
    }
  };
  walk(root, '');
  return out;
}

/** The 1-based line of cilium.policies[i].glob in config.yaml, or 0. */
function globLine(text: string, i: number): number {
  const lines = new LineCounter();
  const node = parseDocument(text, { lineCounter: lines }).getIn(['cilium', 'policies', i, 'glob'], true) as { range?: [number, number, number] } | undefined;
  return node?.range ? lines.linePos(node.range[0]).line : 0;
}

/** The findings of the policy files `block` selects for the agent config `file` (whose text is `text`). */
export function checkPolicies(file: string, text: string, block: CiliumConfig): PolicyFindings {
  const { globs } = ciliumServer.projectFiles!(block);
  const root = projectRoot(file);
  let all: string[];
  try {
    all = projectFiles(root);
  } catch (e) {
    return {
      findings: [{ kind: 'error', text: `${file}: cilium.policies: cannot list the files of the project in ${root}: ${(e as Error).message}` }],
      note: '',
    };
  }
  const findings: PolicyFindings['findings'] = [];
  const selected = new Set<string>();
  for (const [i, glob] of globs.entries()) {
    // As the server reads them: relative to the project's root, a leading "/" or not.
    const re = globToRegExp(glob.replace(/^\/+/, ''));
    const matched = all.filter((f) => re.test(f));
    if (matched.length === 0) {
      const line = globLine(text, i);
      const where = `${file}${line ? `:${line}` : ''}`;
      findings.push({
        kind: 'warning',
        text: `${where}: cilium.policies[${i}].glob: "${glob}" matches no file in ${root}; fix the pattern (it is relative to the project's root) or remove it`,
      });
    }
    for (const f of matched) selected.add(f);
  }
  const files: { path: string; data: Buffer }[] = [];
  const byFile: { path: string; line: number; kind: 'error' | 'warning'; text: string }[] = [];
  for (const f of all.filter((p) => selected.has(p))) {
    const path = join(root, f);
    try {
      files.push({ path, data: readFileSync(path) });
    } catch (e) {
      byFile.push({ path, line: 0, kind: 'error', text: `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})` });
    }
  }
  const parsed = parseProjectPolicies(files);
  for (const e of parsed.errors) byFile.push({ path: e.source, line: e.line ?? 0, kind: 'error', text: e.message });
  for (const p of parsed.policies) for (const text of policyWarningMessages([p])) byFile.push({ path: p.source, line: p.line ?? 0, kind: 'warning', text });
  const order = new Map(files.map((f, i) => [f.path, i]));
  byFile.sort((a, b) => (order.get(a.path) ?? -1) - (order.get(b.path) ?? -1) || a.line - b.line);
  findings.push(...byFile.map(({ kind, text }) => ({ kind, text })));
  const alerting = parsed.policies.filter((p) => p.alert).length;
  const note = `cilium.policies: ${plural(parsed.policies.length, 'network policy', 'network policies')} in ${plural(files.length, 'file')} under ${root}, ${alerting} annotated ${ALERT_ANNOTATION}: "true"`;
  return { findings, note };
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
