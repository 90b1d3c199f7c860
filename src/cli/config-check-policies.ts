import { spawnSync } from 'node:child_process';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ALERT_ANNOTATION } from '../modules/cilium/policy/policy.js';
import { parseProjectPolicies, policyWarningMessages } from '../modules/cilium/policy/parse.js';
import type { CiliumConfig } from '../modules/cilium/config.js';
import { ciliumServer } from '../modules/cilium/server.js';
import { readProjectFiles, type ProjectFileSource } from '../server/config/agent-config-loader.js';
import { globToRegExp } from '../shared/config/glob.js';
import { ConfigError, formatIssue } from '../shared/config/schema.js';
import { projectFileSource } from './config-check-files.js';

// `verdict config check` for the policy files an agent's cilium block selects:
// the configuration project's files as git holds them (config-check-files.ts),
// selected and read by the server's own reader, within its limits, and parsed
// by the agent's own parser, so a policy the agent would skip is found before
// it is pushed, with the agent's message.

export interface PolicyFindings {
  /**
   * Globs that select no file, then per policy file in order, by line: policies the agent would skip (the others
   * still apply) as errors, and what it would log as warnings, in its words.
   */
  findings: { kind: 'error' | 'warning'; text: string }[];
  /** One line on what was loaded, for the file's summary. */
  note: string;
  /** The server would refuse the config.yaml (its globs go over the server's limits), not only the agent skip policies. */
  refused?: boolean;
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

/** The 1-based line of cilium.policies[i].glob in config.yaml, or 0. */
function globLine(text: string, i: number): number {
  const lines = new LineCounter();
  const node = parseDocument(text, { lineCounter: lines }).getIn(['cilium', 'policies', i, 'glob'], true) as { range?: [number, number, number] } | undefined;
  return node?.range ? lines.linePos(node.range[0]).line : 0;
}

/** The findings of the policy files `block` selects for the agent config `file` (whose text is `text`). */
export async function checkPolicies(file: string, text: string, block: CiliumConfig): Promise<PolicyFindings> {
  const { path: key, globs } = ciliumServer.projectFiles!(block);
  const root = projectRoot(file);
  const { source, where } = projectFileSource(root);
  const findings: PolicyFindings['findings'] = [];
  const fail = (text: string): PolicyFindings => ({ findings: [...findings, { kind: 'error', text }], note: '' });
  let all: string[];
  try {
    all = await source.list();
  } catch (e) {
    return fail(`${file}: ${key}: cannot list the files of the project in ${root}: ${(e as Error).message}`);
  }
  // Listed once: the server's reader below selects from the same list.
  const listed: ProjectFileSource = { list: async () => all, read: (f) => source.read(f) };
  for (const [i, glob] of globs.entries()) {
    // As the server reads them: relative to the project's root, a leading "/" or not.
    const re = globToRegExp(glob.replace(/^\/+/, ''));
    if (all.some((f) => re.test(f))) continue;
    const line = globLine(text, i);
    findings.push({
      kind: 'warning',
      text: `${file}${line ? `:${line}` : ''}: ${key}[${i}].glob: "${glob}" matches no file ${where} ${root}; fix the pattern (it is relative to the project's root)${where === 'in' ? '' : ', `git add` the files'} or remove it`,
    });
  }
  let files: { path: string; data: Buffer }[];
  try {
    // The server's own selection and limits, so what passes here is what the agent gets.
    files = (await readProjectFiles(listed, file, key, globs)).map((f) => ({ path: join(root, f.path), data: Buffer.from(f.data) }));
  } catch (e) {
    if (e instanceof ConfigError) {
      return {
        findings: [
          ...findings,
          ...e.issues.map((i) => ({ kind: 'error' as const, text: formatIssue(i.file === file ? i : { ...i, file: join(root, i.file) }) })),
        ],
        note: '',
        refused: true,
      };
    }
    return fail(`${file}: ${key}: cannot read the files of the project in ${root}: ${(e as Error).message}`);
  }
  const byFile: { path: string; line: number; kind: 'error' | 'warning'; text: string }[] = [];
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
