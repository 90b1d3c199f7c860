import type { Impersonation } from '../../gen/verdict/kubernetes_api.js';
import type { CiAccessConfig } from './config.js';
import type { CiJob } from './job-tokens.js';

// Who may use an agent from a CI/CD job, and as whom the request reaches the
// API server: the rules of GitLab's ci_access. A job's project is allowed by
// an entry of ci_access.projects with its path, by one of ci_access.groups
// naming a group above it, or by ci_access.instance. Each entry can narrow
// that to environments and to protected refs. As in GitLab, a project entry
// comes first, then groups from the closest, then the instance; the first
// entry whose rules the job meets decides (its default_namespace, access_as).
// GitLab also authorizes the agent's own configuration project without an
// entry (its finder puts that implicit authorization after the project's own
// entry and before groups): access_as agent, no environment or branch rules.

type Entry = NonNullable<CiAccessConfig['projects']>[number];
type Rules = Omit<Entry, 'id'>;
export type AccessAs = NonNullable<Entry['access_as']>;

export type AccessDecision = { allowed: true; via: string; default_namespace: string; access_as: AccessAs } | { allowed: false; reason: string };

/** Groups above a project, closest first: a/b/c → a/b, a. */
export function groupsOf(project: string): string[] {
  const parts = project.split('/');
  const out: string[] = [];
  for (let i = parts.length - 1; i > 0; i--) out.push(parts.slice(0, i).join('/'));
  return out;
}

/** GitLab environment names in ci_access may use `*` as a wildcard (review/*). */
function environmentMatches(pattern: string, env: string): boolean {
  if (!pattern.includes('*')) return pattern === env;
  const re = new RegExp(
    `^${pattern
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
  return re.test(env);
}

/** Why the job does not meet an entry's rules, or undefined when it does. */
function refusal(rules: Rules, job: CiJob, via: string): string | undefined {
  const envs = rules.environments ?? [];
  if (envs.length > 0) {
    if (!job.environment) return `${via} allows only jobs of environments ${envs.join(', ')} and job ${job.id} has none; create its token with --environment`;
    if (!envs.some((p) => environmentMatches(p, job.environment))) return `${via} allows only environments ${envs.join(', ')}, not "${job.environment}"`;
  }
  if (rules.protected_branches_only && !job.protected)
    return `${via} allows only jobs on protected branches and job ${job.id} runs on ${job.ref ? `"${job.ref}", not protected` : 'no protected ref'}`;
  return undefined;
}

const AS_AGENT: AccessAs = { agent: {}, impersonate: undefined, ci_job: undefined };

/** Project and group paths compare as GitLab looks them up: without regard to case. */
const samePath = (a: string, b: string) => a === b || a.toLowerCase() === b.toLowerCase();

/**
 * Whether the job may use the agent whose ci_access block this is, and how.
 * configProject: the path of the agent's configuration project as jobs name
 * projects (kubeconfig.ts projectPath); its jobs are allowed implicitly.
 */
export function decideAccess(block: CiAccessConfig | undefined, job: CiJob, agentName: string, configProject?: string): AccessDecision {
  // Without the block the agent part does not run, so even the configuration project's jobs would find no agent to talk to.
  if (!block)
    return {
      allowed: false,
      reason: `agent "${agentName}" has no ci_access block in its config.yaml${configProject !== undefined && samePath(configProject, job.project) ? ' (its configuration project needs no entry, but the block must be there: ci_access: {})' : ''}`,
    };
  const candidates: { rules: Rules; via: string }[] = [];
  (block.projects ?? []).forEach((e, i) => {
    if (samePath(e.id, job.project)) candidates.push({ rules: e, via: `ci_access.projects[${i}] (${e.id})` });
  });
  if (configProject !== undefined && samePath(configProject, job.project))
    candidates.push({
      rules: { access_as: AS_AGENT, default_namespace: undefined, environments: undefined, protected_branches_only: undefined },
      via: `the configuration project of agent "${agentName}" (implicit)`,
    });
  for (const g of groupsOf(job.project)) {
    (block.groups ?? []).forEach((e, i) => {
      if (samePath(e.id, g)) candidates.push({ rules: e, via: `ci_access.groups[${i}] (${e.id})` });
    });
  }
  if (block.instance) candidates.push({ rules: block.instance, via: 'ci_access.instance' });
  if (candidates.length === 0) {
    return {
      allowed: false,
      reason: `project ${job.project} is not in ci_access.projects, under ci_access.groups or allowed by ci_access.instance of agent "${agentName}"; add it to that agent's config.yaml`,
    };
  }
  let first: string | undefined;
  for (const c of candidates) {
    const why = refusal(c.rules, job, c.via);
    if (why) {
      first ??= why;
      continue;
    }
    return {
      allowed: true,
      via: c.via,
      default_namespace: c.rules.default_namespace ?? '',
      access_as: c.rules.access_as ?? AS_AGENT,
    };
  }
  return { allowed: false, reason: first! };
}

/** GitLab's environment slug, without its random suffix: lower case, other characters dashes, at most 24. */
export function environmentSlug(env: string): string {
  return env
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 24)
    .replace(/-+$/, '');
}

export interface ImpersonationInputs {
  job: CiJob;
  agentId: number;
  /** The agent's configuration project as jobs name projects (group/project, kubeconfig.ts projectPath): agent.gitlab.com/config_project_id. */
  configProject: string;
}

/**
 * Whom the agent acts as at the API server, per access_as: the agent itself
 * (undefined), the configured identity, or the CI job as GitLab names it
 * (user gitlab:ci_job:<job>, groups per project, group and environment, and
 * extra fields under agent.gitlab.com/).
 */
export function impersonationFor(accessAs: AccessAs, o: ImpersonationInputs): Impersonation | undefined {
  if ('impersonate' in accessAs && accessAs.impersonate) {
    const i = accessAs.impersonate;
    return {
      username: i.username,
      groups: i.groups ?? [],
      uid: i.uid ?? '',
      extra: Object.fromEntries((i.extra ?? []).map((e) => [e.key, { values: e.val }])),
    };
  }
  if ('ci_job' in accessAs && accessAs.ci_job) {
    const { job } = o;
    const groups = ['gitlab:ci_job', `gitlab:project:${job.project}`, ...groupsOf(job.project).map((g) => `gitlab:group:${g}`)];
    const extra: Record<string, { values: string[] }> = {
      'agent.gitlab.com/id': { values: [String(o.agentId)] },
      'agent.gitlab.com/config_project_id': { values: [o.configProject] },
      'agent.gitlab.com/project_id': { values: [job.project] },
      'agent.gitlab.com/ci_job_id': { values: [String(job.id)] },
    };
    if (job.environment) {
      const slug = environmentSlug(job.environment);
      groups.push(`gitlab:project_env:${job.project}:${slug}`);
      extra['agent.gitlab.com/environment_slug'] = { values: [slug] };
    }
    return { username: `gitlab:ci_job:${job.id}`, groups, uid: '', extra };
  }
  return undefined;
}
