// A job's own Impersonate-* headers, refused by the server's proxy and again by the agent (an older server may pass
// them on): one rule and one message for both sides.

/** The Impersonate-* headers among these header names (kubectl --as, --as-group, --as-uid, Impersonate-Extra-*), lower-case, once each. */
export function impersonateHeaders(names: Iterable<string>): string[] {
  const found = new Set<string>();
  for (const n of names) {
    const name = n.toLowerCase();
    if (name.startsWith('impersonate-')) found.add(name);
  }
  return [...found];
}

/** The header names of Node's rawHeaders (name, value, name, value, …). */
export function rawHeaderNames(raw: readonly string[]): string[] {
  return raw.filter((_, i) => i % 2 === 0);
}

/**
 * Why a job may not impersonate. The GitLab agent passes a job's Impersonate-* headers on with access_as agent, and
 * the API server checks the agent's right to impersonate; Verdict's manifest grants the agent impersonation of
 * anyone (ci_job and impersonate need it), so a job passing its own would act as anyone, system:masters included.
 * Who a job acts as is config.yaml's to say, never the job's. `where`: the agent and its configuration project, when
 * known (the agent's side knows neither).
 */
export function impersonationRefusal(headers: readonly string[], project: string, where?: { agent: string; configProject: string }): string {
  const config = where ? `agent "${where.agent}"'s config.yaml in ${where.configProject}` : "this agent's config.yaml";
  return `impersonation through the CI tunnel is not allowed (the request sends ${headers.join(', ')}: kubectl --as, --as-group or --as-uid); drop them, and to make jobs of project ${project} act as another identity set access_as: {impersonate: {username: …, groups: […]}} (or access_as: {ci_job: {}} and RoleBindings for its groups) in the ci_access entry of ${config}`;
}
