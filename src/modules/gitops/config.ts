import { globProblem } from '../../shared/config/glob.js';
import { namespaceName, projectId } from '../../shared/config/gitlab-agent.js';
import { isMap, isSeq, type Node } from 'yaml';
import { inventoryPart } from './inventory.js';
import { bool, duration, exactlyOne, field, int, list, obj, oneOf, refine, reportIssue, str, unused, type Validator } from '../../shared/config/schema.js';

// The `gitops` block of config.yaml: the GitLab agent's schema of every version
// (13.x `resource_inclusions`, 14.0 cli-utils options, 15.x `ref`, optional
// `id` and the experimental `charts`), so that files written for any of them
// validate. `manifest_projects` is synchronised (docs/gitops.md); 13.x
// resource filters and 15.x Helm charts are checked with the original's rules
// and reported as not used.

// Limits of the GitLab agent's server for one manifest project.
export const MAX_PATHS_PER_PROJECT = 100;

const glob = refine(str({ nonEmpty: true }), globProblem);

/** A git ref of the manifest project: exactly one of tag, branch, commit (default: the default branch). */
const gitRef = exactlyOne(
  {
    tag: field(str({ nonEmpty: true })),
    branch: field(str({ nonEmpty: true })),
    commit: field(str({ nonEmpty: true })),
  },
  'ref: {branch: main}',
);

/** 13.x: which kinds of objects to apply (removed in 14.0 with the move to cli-utils). */
const resourceFilter = obj({
  api_groups: field(list(str(), { min: 1 }), { required: true }),
  kinds: field(list(str({ nonEmpty: true }), { min: 1 }), { required: true }),
});

const RESOURCE_FILTERS_UNUSED = 'the GitLab agent dropped resource filters in 14.0; every object of the manifests is applied';

const manifestProject = obj({
  /** Unset: the configuration project itself (15.7 and later; required before). */
  id: field(projectId),
  ref: field(gitRef),
  default_namespace: field(namespaceName, { default: 'default' }),
  paths: field(
    list(obj({ glob: field(glob, { required: true }) }), { max: MAX_PATHS_PER_PROJECT, maxWhy: 'the limit of the GitLab agent server for one project' }),
    {
      default: [{ glob: '**/*.{yaml,yml,json}' }],
    },
  ),
  reconcile_timeout: field(duration(), { default: 3_600_000 }),
  dry_run_strategy: field(oneOf(['', 'none', 'client', 'server'] as const), { default: 'none' }),
  prune: field(bool(), { default: true }),
  /** 14.0 development versions only, before `prune` replaced it. */
  no_prune: field(bool()),
  prune_timeout: field(duration(), { default: 3_600_000 }),
  prune_propagation_policy: field(oneOf(['', 'orphan', 'background', 'foreground'] as const), { default: 'foreground' }),
  inventory_policy: field(oneOf(['', 'must_match', 'adopt_if_no_inventory', 'adopt_all'] as const), { default: 'must_match' }),
  /** Verdict's own: how often a synchronised commit is applied again, correcting drift (the original: a fixed 5 min). */
  resync_interval: field(duration({ min: 1000 }), { default: 300_000 }),
  resource_inclusions: field(unused(list(resourceFilter), RESOURCE_FILTERS_UNUSED)),
  resource_exclusions: field(unused(list(resourceFilter), RESOURCE_FILTERS_UNUSED)),
});

type GitopsProject = NonNullable<ReturnType<typeof manifestProject>>;

/** A manifest_projects entry as messages name it. */
export const entryName = (id: string | undefined) => (id ? `id: ${id}` : 'no id: the configuration project');

/**
 * One manifest project per id: the original refuses a second entry for the same project. Verdict also refuses two
 * ids that make the same inventory (inventoryPart): the original's inventory names hold numeric ids, which never
 * collide, while Verdict's hold the path, which the ConfigMap name makes lowercase and dashed; renaming inventories
 * would orphan every object in clusters already synchronised, so the ambiguous configuration is what goes.
 */
const manifestProjects: Validator<GitopsProject[]> = (node, path, ctx, key) => {
  const projects = list(manifestProject)(node, path, ctx, key);
  if (!projects || !isSeq(node)) return projects;
  const seen = new Set<string>();
  const inventories = new Map<string, number>();
  projects.forEach((p, i) => {
    const entry = node.items[i] as Node;
    const id = p.id ?? '(the configuration project)';
    if (seen.has(id)) {
      reportIssue(ctx, entry, `${path}[${i}]`, `duplicate project id: ${id}; list each project once`);
      return;
    }
    seen.add(id);
    const part = inventoryPart(p.id);
    const other = inventories.get(part);
    if (other === undefined) {
      inventories.set(part, i);
      return;
    }
    const idNode = isMap(entry) ? (entry.get('id', true) as Node | undefined) : undefined;
    reportIssue(
      ctx,
      idNode ?? entry,
      idNode ? `${path}[${i}].id` : `${path}[${i}]`,
      `this entry (${entryName(p.id)}) and ${path}[${other}] (${entryName(projects[other]!.id)}) would share one inventory, inventory-<agent>-${part} ` +
        '(the inventory ConfigMap and the id its objects are annotated with come from the project id, lowercase with "/", "." and "_" as "-"), ' +
        "so each project's sync would prune the other's objects; keep one of the two in this agent's config.yaml and synchronise the other with another agent",
    );
  });
  return projects;
};

/** Helm values written out: any mapping (a google.protobuf.Struct in the original). */
const helmValues: Validator<Record<string, unknown>> = (node, path, ctx) =>
  isMap(node) ? (node.toJSON() as Record<string, unknown>) : reportIssue(ctx, node, path, 'must be a mapping of Helm values, e.g. {replicaCount: 2}');

/** 15.x experimental Helm charts (removed in 16.3). */
const chartValues = exactlyOne(
  {
    inline: field(helmValues),
    file: field(obj({ project_id: field(projectId), ref: field(gitRef), file: field(str({ nonEmpty: true }), { required: true }) })),
    url: field(
      obj({
        url: field(str({ pattern: /^[a-z][a-z0-9+.-]*:\/\/\S+$/i, hint: 'an absolute URL' }), { required: true }),
        poll_period: field(duration({ min: 1 })),
        max_file_size: field(int({ min: 1 })),
      }),
    ),
  },
  'values: [{inline: {replicaCount: 2}}]',
);

const chart = obj({
  release_name: field(str({ nonEmpty: true }), { required: true }),
  source: field(
    exactlyOne(
      { project: field(obj({ id: field(projectId, { required: true }), path: field(str()), ref: field(gitRef) })) },
      'source: {project: {id: group/charts}}',
    ),
    {
      required: true,
    },
  ),
  values: field(list(chartValues)),
  namespace: field(str({ nonEmpty: true })),
  max_history: field(int({ min: 1 })),
});

export const GITOPS_CHARTS_UNUSED = 'Helm charts are not part of this release; render them into manifests';

export const gitopsSchema = obj({
  manifest_projects: field(manifestProjects, { default: [] }),
  charts: field(unused(list(chart), GITOPS_CHARTS_UNUSED)),
});

export type GitopsConfig = typeof gitopsSchema extends Validator<infer T> ? T : never;

export const gitopsBlock = gitopsSchema;
