import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAgentConfig } from '../server/config/agent-config.js';
import { ConfigError, formatIssue, parseYamlConfig, type ConfigIssue } from '../shared/config/schema.js';
import { serverConfigSchema } from '../shared/config/server-config.js';
import type { CiliumConfig } from '../modules/cilium/config.js';
import { parseFlags, usageError } from './args.js';
import { checkPolicies } from './config-check-policies.js';

// `verdict config check`: the server's validation of config.yaml, offline, for
// pre-commit hooks and CI, so a file that would stop an agent's modules is
// refused before it is committed rather than after.

const HELP = `Usage: verdict config check <file|dir>... [--server <server.yaml>]...

Validates agent configuration files (.gitlab/agents/<name>/config.yaml) as the
server does, without a server. A directory is searched for
.gitlab/agents/*/config.yaml files (and a config.yaml directly in it).

Prints one line per finding, "error: " or "warning: " then
file:line: path: message, and one summary line per file.

Errors make a file invalid (the server refuses it; the agent keeps its last good
configuration):
  - a wrong type or value of a key Verdict uses: cilium, falco,
    gitops.manifest_projects, ci_access, observability.logging.level;
  - an unknown key in cilium, in falco or in a gitops.manifest_projects entry;
  - a misspelt key in a ci_access entry (a restriction that would be dropped).
Warnings leave it valid:
  - keys of the GitLab agent Verdict does not use (gitops.charts, user_access,
    container_scanning, remote_development, ...), and any problem inside them;
  - other unknown keys: at the top level, in observability, in ci_access.
Policies: for a valid config.yaml whose cilium block has policies globs, the
files they select in the configuration project (the directory holding .gitlab/;
for a config.yaml elsewhere, its git work tree or else its directory) are read
as the server reads them and parsed as the agent parses them. In a git work tree
that is git's index, what the next commit holds (untracked and ignored files are
not, node_modules is, a symlink is the path it points to); outside git, the
directory. A policy the agent would skip (a YAML or JSON syntax error, a field
it cannot read, a duplicate name) is an error: the file is invalid, though the
server takes it. So are globs over the server's limits (1000 files, 5 MiB a
file, 20 MiB in all), which the server refuses. What the agent logs as a policy
warning (a part that matches no flow, the alert opt-in written as a label), and
a glob that selects no file, are warnings. A line then counts the policies loaded.
--server checks a server config file as \`verdict server --config\` loads it (its
env: and file: references are read, so run it where the server's environment is):
unknown keys, wrong values, and webhook URLs on a private address (a literal IP or
localhost) that webhooks.allow_private_addresses does not allow.
See docs/configuration.md.

Exit status: 0 when every file is valid (warnings allowed), 1 when one is not
or cannot be read, 2 for usage errors.
`;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags('config', argv, { help: { type: 'boolean', short: 'h' }, server: { type: 'string', multiple: true } }, true);
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [sub, ...paths] = positionals;
  if (sub !== 'check')
    throw usageError(`verdict config: ${sub ? `unknown subcommand "${sub}"` : 'give a subcommand'}; use \`verdict config check <file|dir>...\``);
  const servers = values.server ?? [];
  if (paths.length === 0 && servers.length === 0)
    throw usageError('verdict config check: give config.yaml files or directories to check, e.g. `verdict config check .`, or --server <server.yaml>');
  let ok = true;
  for (const f of servers) ok = (await checkFile(f, 'server')) && ok;
  for (const path of paths) {
    let files: string[];
    try {
      files = statSync(path).isDirectory() ? configFilesIn(path) : [path];
    } catch (e) {
      process.stdout.write(`error: ${path}: cannot read: ${(e as Error).message}\n`);
      ok = false;
      continue;
    }
    if (files.length === 0) {
      process.stdout.write(`error: ${path}: no .gitlab/agents/*/config.yaml or config.yaml in this directory; pass the files to check\n`);
      ok = false;
    }
    for (const f of files) ok = (await checkFile(f, 'agent')) && ok;
  }
  return ok ? 0 : 1;
}

// The server takes such a config.yaml; what fails is in the agent, one policy at a time.
const POLICIES_SKIPPED = 'the agent would skip the policies in error and match flows against the others';

const REFUSED = {
  agent: 'the server would refuse it and the agent would keep its last good configuration',
  server: '`verdict server` would refuse to start with it',
};

/** Checks one file (an agent's config.yaml, or a server config) and prints its findings; true when it is valid. */
async function checkFile(file: string, kind: 'agent' | 'server'): Promise<boolean> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    process.stdout.write(`error: ${file}: cannot read: ${(e as Error).message}\n`);
    return false;
  }
  let errors: ConfigIssue[] = [];
  let warnings: ConfigIssue[];
  let cilium: CiliumConfig | undefined;
  try {
    if (kind === 'agent') {
      const parsed = parseAgentConfig(text, file);
      warnings = parsed.warnings;
      cilium = parsed.value.cilium;
    } else warnings = parseYamlConfig(text, file, serverConfigSchema).warnings;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    errors = e.issues;
    warnings = e.warnings;
  }
  const findings = [...errors.map((i) => ({ i, kind: 'error' })), ...warnings.map((i) => ({ i, kind: 'warning' }))].sort((a, b) => a.i.line - b.i.line);
  for (const { i, kind } of findings) process.stdout.write(`${kind}: ${formatIssue(i)}\n`);
  // Only a valid config.yaml says which files the agent would load.
  const policies = cilium?.policies.length ? await checkPolicies(file, text, cilium) : undefined;
  const more = policies?.findings ?? [];
  for (const f of more) process.stdout.write(`${f.kind}: ${f.text}\n`);
  if (policies?.note) process.stdout.write(`${file}: ${policies.note}\n`);
  const errorCount = errors.length + more.filter((f) => f.kind === 'error').length;
  const counts = `${plural(errorCount, 'error')}, ${plural(warnings.length + more.filter((f) => f.kind === 'warning').length, 'warning')}`;
  const why = errors.length || policies?.refused ? REFUSED[kind] : POLICIES_SKIPPED;
  process.stdout.write(errorCount ? `${file}: invalid (${counts}); ${why}\n` : `${file}: valid (${counts})\n`);
  return errorCount === 0;
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}

/** config.yaml directly in dir, and every .gitlab/agents/<name>/config.yaml below it. */
function configFilesIn(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== '.git' && e.name !== 'node_modules') walk(p);
      } else if (e.name === 'config.yaml' && (d === dir || /[\\/]\.gitlab[\\/]agents[\\/][^\\/]+[\\/]config\.yaml$/.test(resolve(p)))) {
        out.push(p);
      }
    }
  };
  walk(dir);
  return out;
}
