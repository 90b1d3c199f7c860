import { kubeConnection } from '../agent/kubernetes/connection.js';
import { explainKubeError } from '../agent/kubernetes/explain.js';
import type { GitRefCF } from '../gen/verdict/gitops.js';
import { refSpec } from '../modules/gitops/git-ref.js';
import { entryInventory, refOf, settingsOf } from '../modules/gitops/agent.js';
import { agentEntry } from '../modules/gitops/agent-entry.js';
import type { InventoryPolicy, InventoryRef } from '../modules/gitops/inventory.js';
import { AgentRegistry, type AgentRecord } from '../server/agents/agent-registry.js';
import { KubeApi } from '../modules/gitops/kube/api.js';
import { Discovery } from '../modules/gitops/kube/discovery.js';
import { DEFAULT_GLOB, readFiles, selectFiles } from '../modules/gitops/manifest-files.js';
import { preview, type PreviewLine } from '../modules/gitops/preview.js';
import { resolveProject } from '../modules/gitops/project-repos.js';
import { resolveCommit } from '../server/config/git-project.js';
import { NAMESPACE_NAME, NAMESPACE_NAME_HINT } from '../shared/config/gitlab-agent.js';
import { globProblem } from '../shared/config/glob.js';
import { loadServerConfigFile, SERVER_DEFAULTS } from '../shared/config/server-config.js';
import { isVerdictError } from '../shared/errors.js';
import { errText } from '../shared/log/logger.js';
import { parseFlags, usageError } from './args.js';
import { openExistingServerDb, SERVER_DB_FLAGS, serverDataDir } from './server-db.js';

// `verdict gitops diff`: what a sync of a manifest project would change in the
// cluster, for review before merging. Files are read as the server reads them
// (projects_dir, ref, globs, limits); every object is a server-side dry-run
// apply against the live cluster; nothing is written.

const HELP = `Usage: verdict gitops diff --project <id> [flags]

Shows what the GitOps module would change: each object of the project's
manifests as a server-side dry-run apply against the cluster, compared with
what the cluster holds, and (with --agent) what would be pruned. Each changed
field is a line, \`<path>: <now> -> <after>\`; lists whose elements have a name
(containers, env, ports, volumes) are compared element by name, as
spec.template.spec.containers[name=app].image, other lists by index while their
length stays.

With --agent, the agent's config.yaml is read as the server sends it (its
configuration project, from the server's database, at HEAD) and its
gitops.manifest_projects entry for --project gives the ref, the globs (paths),
default_namespace, prune and inventory_policy; --ref, --path and --namespace,
when given, win. The first line of the output says where each value came from.

  --project <id>         manifest project id (group/project or numeric) under projects_dir
  --ref <ref>            branch:<name>, tag:<name>, commit:<sha>, or a branch name
                         (default: the entry's ref, else the default branch)
  --projects-dir <dir>   the server's projects_dir (or --config server.yaml)
  --config <file>        the server's config file, for projects_dir and data_dir
  --data-dir <dir>       the server's data_dir, where --agent is looked up (default: data_dir of
                         --config, else ${SERVER_DEFAULTS.data_dir})
  --path <glob>          manifest glob, repeatable (default: the entry's paths, else **/*.{yaml,yml,json})
  --namespace <ns>       default_namespace of the project (default: the entry's, else default)
  --agent <name>         the agent that synchronises the project: its entry gives the values above,
                         and the objects its inventory of the project (ConfigMap
                         inventory-<name>-<project> in the namespace, made DNS-safe, e.g.
                         inventory-prod-group-app) holds and the manifests no longer do are
                         shown as pruned (none with prune: false); objects its
                         inventory_policy refuses are shown as failed
  --kubeconfig <file>    the cluster (default: KUBECONFIG, the pod's service account, ~/.kube/config)

Exit status (as kubectl diff: above 1 is an error):
  0  nothing would change
  1  something would be created, configured or pruned, and every object passed its dry run
  2  usage error: a flag is missing, or its value names nothing or does not parse
     (an unknown --agent, a --project its config.yaml does not list, no server database)
  3  the API server refused the dry run of some objects, the agent's inventory_policy refuses
     them, or they are invalid (listed as failed)
  4  the diff could not run: the cluster or the project could not be read, a file does not
     decode, the agent's config.yaml cannot be read
`;

function parseRef(r: string | undefined): GitRefCF | undefined {
  if (!r) return undefined;
  const m = /^(branch|tag|commit):(.+)$/.exec(r);
  const [kind, value] = m ? [m[1] as 'branch' | 'tag' | 'commit', m[2]!] : (['branch', r] as const);
  return { ref: { $case: kind, value } };
}

function render(l: PreviewLine): string {
  const head = `${l.action.padEnd(9)} ${l.object}${l.source ? `  (${l.source})` : ''}${l.reason ? `: ${l.reason}` : ''}`;
  return [head, ...(l.changes ?? []).map((c) => `    ${c}`)].join('\n');
}

/** Exit statuses; 1 is reserved for "would change", so a pipeline can tell changes from errors. */
export const EXIT = { unchanged: 0, changes: 1, usage: 2, failed: 3, error: 4 } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    'gitops',
    argv,
    {
      help: { type: 'boolean', short: 'h' },
      project: { type: 'string' },
      ref: { type: 'string' },
      'projects-dir': { type: 'string' },
      path: { type: 'string', multiple: true },
      namespace: { type: 'string' },
      agent: { type: 'string' },
      kubeconfig: { type: 'string' },
      ...SERVER_DB_FLAGS,
    },
    true,
  );
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals[0] !== 'diff') throw usageError('verdict gitops: the subcommand is diff; see `verdict gitops --help`');
  if (!values.project) throw usageError('verdict gitops diff: give --project <id>');
  const projectsDir = values['projects-dir'] ?? (values.config ? loadServerConfigFile(values.config).projects_dir : undefined);
  if (!projectsDir) throw usageError('verdict gitops diff: give --projects-dir <dir> or --config <server.yaml> with projects_dir');
  // A flag's value that names nothing is a usage error (exit 2), never exit 1, which says the sync would change something.
  const flag = <T>(name: string, f: () => T): T => {
    try {
      return f();
    } catch (e) {
      throw usageError(`verdict gitops diff: ${name}: ${(e as Error).message}`);
    }
  };
  if (values.namespace !== undefined && !NAMESPACE_NAME.test(values.namespace)) {
    throw usageError(`verdict gitops diff: --namespace ${values.namespace}: not ${NAMESPACE_NAME_HINT}`);
  }
  for (const glob of values.path ?? []) {
    const problem = globProblem(glob.replace(/^\//, ''));
    if (problem) throw usageError(`verdict gitops diff: --path ${glob}: ${problem}; fix it (the glob syntax: docs/gitops.md)`);
  }
  // Without --agent there is no configuration project: every id resolves under projects_dir.
  const agent = values.agent === undefined ? undefined : lookUpAgent(values.agent, serverDataDir(values, 'gitops diff --agent'));
  const project = flag('--project', () => resolveProject(values.project!, agent?.config_project ?? '', projectsDir));
  try {
    const settings = await settingsFor(project.id, projectsDir, agent, values);
    const refFlag = settings.ref.from === 'from --ref' ? '--ref' : `the ref of ${values.agent}'s entry`;
    const ref = flag(refFlag, () => refSpec(settings.ref.value));
    return await diff(project, ref, refFlag, settings, values.kubeconfig);
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_USAGE')) throw e;
    if (isVerdictError(e, 'VERDICT_NOT_FOUND')) throw usageError(`verdict gitops diff: ${e.message}`);
    // Not exit 1 (the `verdict` default for a failure): that status says the sync would change something.
    // On stderr, as usage errors are: stdout is the diff.
    process.stderr.write(`verdict gitops diff: could not run: ${errText(e)}\n`);
    return EXIT.error;
  }
}

/** The agent as the server's database has it; the database must exist (openExistingServerDb says which flag gives it). */
function lookUpAgent(name: string, dataDir: string): AgentRecord {
  const db = openExistingServerDb(dataDir, 'gitops diff --agent');
  try {
    const registry = new AgentRegistry(db);
    const agent = registry.get(name);
    if (agent) return agent;
    const names = registry.list().map((a) => a.name);
    throw usageError(
      `verdict gitops diff: --agent ${name}: no such agent in the server's database in ${dataDir} (${names.length ? `registered: ${names.join(', ')}` : 'no agent is registered'}); give the name of the agent that synchronises the project (\`verdict agents list\`), or --data-dir / --config of the server it connects to`,
    );
  } finally {
    db.close();
  }
}

/** One value of the diff and where it came from, for the first line of the output. */
interface Sourced<T> {
  value: T;
  from: string;
}

interface DiffSettings {
  ref: Sourced<GitRefCF | undefined>;
  globs: Sourced<string[]>;
  namespace: Sourced<string>;
  agent?: { inventory: InventoryRef; entryNamespace: string; prune: boolean; policy: InventoryPolicy; dryRun: string; from: string };
}

/** Each value from its flag, else from the agent's entry for the project, else the default the agent's would have. */
async function settingsFor(
  projectId: string,
  projectsDir: string,
  agent: AgentRecord | undefined,
  values: { ref?: string; path?: string[]; namespace?: string },
): Promise<DiffSettings> {
  const read = agent ? await agentEntry(agent, projectId, projectsDir) : undefined;
  const from = agent && read ? `from ${agent.name}'s config.yaml` : 'default';
  const entry = read?.entry;
  const pick = <T>(flagName: string, given: T | undefined, fromEntry: T | undefined, fallback: T): Sourced<T> =>
    given !== undefined ? { value: given, from: `from ${flagName}` } : { value: fromEntry ?? fallback, from };
  const settings: DiffSettings = {
    ref: pick('--ref', parseRef(values.ref), entry ? refOf(entry) : undefined, undefined),
    globs: pick(
      '--path',
      values.path,
      entry?.paths?.map((p) => p.glob),
      [],
    ),
    namespace: pick('--namespace', values.namespace, entry?.default_namespace, 'default'),
  };
  if (agent && read && entry) {
    const s = settingsOf(entry);
    // The inventory is named by the entry's id (or stands for the configuration project), in the namespace the diff uses.
    const { name, id } = entryInventory(agent.name, entry);
    settings.agent = {
      inventory: { namespace: settings.namespace.value, name, id },
      entryNamespace: s.defaultNamespace,
      prune: s.prune,
      policy: s.inventoryPolicy,
      dryRun: s.dryRun,
      from: `from ${agent.name}'s config.yaml: ${read.file} in ${agent.config_project} at ${read.commit.slice(0, 12)}`,
    };
  }
  return settings;
}

/** The first line's account of the values: each with where it came from; the entry's own settings last, with the file and commit read. */
function describeSettings(s: DiffSettings): string {
  const globs = s.globs.value.length ? s.globs.value.join(', ') : DEFAULT_GLOB;
  const r = s.ref.value?.ref;
  const parts = [
    `ref ${r ? `${r.$case}:${r.value}` : 'the default branch'} (${s.ref.from})`,
    `paths ${globs} (${s.globs.from})`,
    `namespace ${s.namespace.value} (${s.namespace.from})`,
  ];
  const a = s.agent;
  if (!a) return parts.join(', ');
  // The silent way to a wrong diff: another namespace holds no inventory of the agent's, so nothing shows as pruned.
  const elsewhere = a.inventory.namespace === a.entryNamespace ? '' : ` (not the agent's: its entry keeps it in ${a.entryNamespace})`;
  parts.push(
    a.prune
      ? `pruning against ${a.inventory.namespace}/${a.inventory.name}${elsewhere}`
      : `prune false: nothing is pruned (inventory ${a.inventory.namespace}/${a.inventory.name})`,
    `inventory_policy ${a.policy}`,
  );
  // A dry_run_strategy other than none: the agent itself writes nothing of this project.
  if (a.dryRun !== 'none') parts.push(`dry_run_strategy ${a.dryRun}: the agent only dry-runs this project and writes none of it`);
  return `${parts.join(', ')} (${a.from})`;
}

/** What the diff needs of the API server, for a 403. */
const DIFF_RBAC = "the kubeconfig's identity needs get on the objects the manifests hold, and patch for the server-side dry runs";

async function diff(
  project: ReturnType<typeof resolveProject>,
  ref: ReturnType<typeof refSpec>,
  refFlag: string,
  s: DiffSettings,
  kubeconfig: string | undefined,
): Promise<number> {
  const commit = await resolveCommit(project.repo, ref.rev);
  if (!commit) throw usageError(`verdict gitops diff: ${refFlag}: ${ref.name} not found in project ${project.id}`);
  const selection = await selectFiles(project.repo, commit, s.globs.value);
  const contents = await readFiles(project.repo, selection.files);
  const files = selection.files.map((f, i) => ({ source: f.path, data: contents[i]! }));
  const connection = kubeConnection({
    ...(kubeconfig ? { kubeconfig } : {}),
    noCredentials: 'pass --kubeconfig, or set KUBECONFIG, to the cluster the agent syncs to',
  });
  const api = new KubeApi(connection);
  try {
    const lines = await preview(files, {
      defaultNamespace: s.namespace.value,
      api,
      discovery: new Discovery(api),
      ...(s.agent ? { inventory: s.agent.inventory, policy: s.agent.policy, prune: s.agent.prune } : {}),
    }).catch((e: unknown) => {
      // The API server's address, the kubeconfig and what to fix, as the agent's GitOps says them.
      const text = explainKubeError(e, connection, DIFF_RBAC, 'this machine');
      throw text === errText(e) ? e : new Error(text, { cause: e });
    });
    // Where each value came from: a value that is not the agent's shows a diff of another sync than the agent's.
    process.stdout.write(`GitOps diff: project ${project.id} at ${commit.slice(0, 12)} against ${connection.server}: ${describeSettings(s)}\n`);
    for (const l of lines) process.stdout.write(`${render(l)}\n`);
    const n = (a: PreviewLine['action']) => lines.filter((l) => l.action === a).length;
    process.stdout.write(
      `Summary: ${n('create')} to create, ${n('configure')} to configure, ${n('unchanged')} unchanged, ${n('prune')} to prune, ${n('keep')} kept on removal, ${n('failed')} failed\n`,
    );
    if (n('failed')) return EXIT.failed;
    return lines.some((l) => l.action !== 'unchanged') ? EXIT.changes : EXIT.unchanged;
  } finally {
    api.close();
  }
}
