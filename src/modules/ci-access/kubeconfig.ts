import { basename, relative, resolve, sep } from 'node:path';
import { stringify } from 'yaml';
import type { AgentRecord } from '../../server/agents/agent-registry.js';
import { decideAccess, type AccessDecision } from './access.js';
import type { CiAccessConfigs } from './agent-configs.js';
import type { CiJob } from './job-tokens.js';

// The KUBECONFIG the original injected into a CI job: one cluster (the
// proxy), and per agent the job may use a user `agent:<id>` whose token is
// `ci:<agent id>:<job token>` and a context `<config project path>:<agent
// name>` in the entry's default_namespace.

export interface AllowedAgent {
  agent: AgentRecord;
  default_namespace: string;
}

/** Which agents allow the job, and why the others refuse it (for the message when none does). */
export async function agentsForJob(
  agents: readonly AgentRecord[],
  job: CiJob,
  configs: CiAccessConfigs,
  projectsDir?: string,
): Promise<{ allowed: AllowedAgent[]; refused: string[] }> {
  const allowed: AllowedAgent[] = [];
  const refused: string[] = [];
  for (const agent of agents) {
    let d: AccessDecision;
    try {
      d = decideAccess(await configs.get(agent), job, agent.name, projectPath(agent.config_project, projectsDir));
    } catch (e) {
      refused.push(`agent "${agent.name}": its config.yaml cannot be read: ${(e as Error).message}`);
      continue;
    }
    if (d.allowed) allowed.push({ agent, default_namespace: d.default_namespace });
    else refused.push(`agent "${agent.name}": ${d.reason}`);
  }
  return { allowed, refused };
}

/** A configuration project as a path, as GitLab names projects: relative to projects_dir when it is under it, else its directory name. */
export function projectPath(configProject: string, projectsDir?: string): string {
  if (projectsDir) {
    const rel = relative(resolve(projectsDir), resolve(configProject));
    if (rel && !rel.startsWith('..') && !rel.startsWith(sep))
      return rel
        .split(sep)
        .join('/')
        .replace(/\.git$/, '');
  }
  return basename(configProject).replace(/\.git$/, '');
}

export interface KubeconfigInput {
  server: string;
  /** PEM of the CA that signed the proxy's certificate, embedded when given. */
  caPem?: string;
  jobToken: string;
  agents: readonly AllowedAgent[];
  projectsDir?: string;
  /**
   * Name agents rather than number them (Kafka replicas: an agent's id differs
   * between replicas' databases, its name does not). A name of digits only
   * would read as an id, so such an agent keeps its id.
   */
  agentsByName?: boolean;
}

export function kubeconfigYaml(k: KubeconfigInput): string {
  const cluster = 'verdict';
  const ref = (a: AllowedAgent) => (k.agentsByName && /\D/.test(a.agent.name) ? a.agent.name : String(a.agent.id));
  const contexts = k.agents.map((a) => ({
    name: `${projectPath(a.agent.config_project, k.projectsDir)}:${a.agent.name}`,
    context: { cluster, user: `agent:${ref(a)}`, ...(a.default_namespace ? { namespace: a.default_namespace } : {}) },
  }));
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server: k.server, ...(k.caPem ? { 'certificate-authority-data': Buffer.from(k.caPem).toString('base64') } : {}) } }],
    users: k.agents.map((a) => ({ name: `agent:${ref(a)}`, user: { token: `ci:${ref(a)}:${k.jobToken}` } })),
    contexts,
    // One agent: nothing to choose. Several: the job picks with `kubectl config use-context`, as in GitLab.
    ...(contexts.length === 1 ? { 'current-context': contexts[0]!.name } : {}),
  });
}
