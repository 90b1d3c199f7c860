import { kubeConnection } from '../agent/kubernetes/connection.js';
import { refSpec } from '../modules/gitops/git-ref.js';
import { inventoryRef } from '../modules/gitops/inventory.js';
import { KubeApi } from '../modules/gitops/kube/api.js';
import { Discovery } from '../modules/gitops/kube/discovery.js';
import { readFiles, selectFiles } from '../modules/gitops/manifest-files.js';
import { preview, type PreviewLine } from '../modules/gitops/preview.js';
import { resolveProject } from '../modules/gitops/project-repos.js';
import { resolveCommit } from '../server/config/git-project.js';
import { NAMESPACE_NAME, NAMESPACE_NAME_HINT } from '../shared/config/gitlab-agent.js';
import { globProblem } from '../shared/config/glob.js';
import { loadServerConfigFile } from '../shared/config/server-config.js';
import { isVerdictError } from '../shared/errors.js';
import { errText } from '../shared/log/logger.js';
import { parseFlags, usageError } from './args.js';

// `verdict gitops diff`: what a sync of a manifest project would change in the
// cluster, for review before merging. Files are read as the server reads them
// (projects_dir, ref, globs, limits); every object is a server-side dry-run
// apply against the live cluster; nothing is written.

const HELP = `Usage: verdict gitops diff --project <id> [flags]

Shows what the GitOps module would change: each object of the project's
manifests as a server-side dry-run apply against the cluster, compared with
what the cluster holds, and (with --agent) what would be pruned.

No agent's config.yaml is read: to see what an agent would apply, give --ref,
--path and --namespace as its gitops.manifest_projects entry for the project
has them (ref, paths[].glob, default_namespace), and --agent its name.

  --project <id>         manifest project id (group/project or numeric) under projects_dir
  --ref <ref>            branch:<name>, tag:<name>, commit:<sha>, or a branch name (default: the default branch)
  --projects-dir <dir>   the server's projects_dir (or --config server.yaml)
  --config <file>        the server's config file, for projects_dir
  --path <glob>          manifest glob, repeatable (default: **/*.{yaml,yml,json})
  --namespace <ns>       default_namespace of the project (default: default)
  --agent <name>         the agent that syncs it: the objects its inventory of this project
                         (ConfigMap inventory-<name>-<project> in --namespace) holds and the
                         manifests no longer do are shown as pruned; with another --namespace
                         than the entry's default_namespace, none are. The inventory's name is
                         made DNS-safe, e.g. inventory-prod-group-app for prod and group/app
  --kubeconfig <file>    the cluster (default: KUBECONFIG, the pod's service account, ~/.kube/config)

Exit status (as kubectl diff: above 1 is an error):
  0  nothing would change
  1  something would be created, configured or pruned, and every object passed its dry run
  2  usage error: a flag is missing, or its value names nothing or does not parse
  3  the API server refused the dry run of some objects, or they are invalid (listed as failed)
  4  the diff could not run: the cluster or the project could not be read, a file does not decode
`;

function parseRef(r: string | undefined) {
  if (!r) return undefined;
  const m = /^(branch|tag|commit):(.+)$/.exec(r);
  const [kind, value] = m ? [m[1] as 'branch' | 'tag' | 'commit', m[2]!] : (['branch', r] as const);
  return { ref: { $case: kind, value } } as const;
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
      config: { type: 'string' },
      path: { type: 'string', multiple: true },
      namespace: { type: 'string', default: 'default' },
      agent: { type: 'string' },
      kubeconfig: { type: 'string' },
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
  if (!NAMESPACE_NAME.test(values.namespace)) {
    throw usageError(`verdict gitops diff: --namespace ${values.namespace}: not ${NAMESPACE_NAME_HINT}`);
  }
  for (const glob of values.path ?? []) {
    const problem = globProblem(glob.replace(/^\//, ''));
    if (problem) throw usageError(`verdict gitops diff: --path ${glob}: ${problem}; fix it (the glob syntax: docs/gitops.md)`);
  }
  // No configuration project here: every id resolves under projects_dir.
  const project = flag('--project', () => resolveProject(values.project!, '', projectsDir));
  const ref = flag('--ref', () => refSpec(parseRef(values.ref)));
  try {
    return await diff(project, ref, values);
  } catch (e) {
    if (isVerdictError(e, 'VERDICT_USAGE')) throw e;
    // Not exit 1 (the `verdict` default for a failure): that status says the sync would change something.
    // On stderr, as usage errors are: stdout is the diff.
    process.stderr.write(`verdict gitops diff: could not run: ${errText(e)}\n`);
    return EXIT.error;
  }
}

async function diff(
  project: ReturnType<typeof resolveProject>,
  ref: ReturnType<typeof refSpec>,
  values: { path?: string[]; namespace: string; agent?: string; kubeconfig?: string },
): Promise<number> {
  const commit = await resolveCommit(project.repo, ref.rev);
  if (!commit) throw usageError(`verdict gitops diff: --ref: ${ref.name} not found in project ${project.id}`);
  const selection = await selectFiles(project.repo, commit, values.path ?? []);
  const contents = await readFiles(project.repo, selection.files);
  const files = selection.files.map((f, i) => ({ source: f.path, data: contents[i]! }));
  const connection = kubeConnection(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {});
  const api = new KubeApi(connection);
  const inventory = values.agent ? inventoryRef(values.agent, project.id, values.namespace) : undefined;
  try {
    const lines = await preview(files, {
      defaultNamespace: values.namespace,
      api,
      discovery: new Discovery(api),
      ...(inventory ? { inventory } : {}),
    });
    // Which inventory prunes were read from: one in another namespace than the agent's entry holds none of them.
    const against = inventory ? `, pruning against ${inventory.namespace}/${inventory.name}` : '';
    process.stdout.write(`GitOps diff: project ${project.id} at ${commit.slice(0, 12)} (${ref.name}) against ${connection.server}${against}\n`);
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
