import { SEVERITY_RANK, type AlertSource, type Severity } from '../../shared/alert/payload.js';
import type { RouteSpec } from '../../shared/config/webhooks-config.js';
import { globToRegExp } from '../../shared/config/glob.js';
import type { StoredAlert } from '../store/alert-store.js';

// Which alerts an integration receives. Every filter that is set must hold
// (AND); inside one filter any entry may match (OR); an empty filter matches
// everything. `policies` and `rules` are one filter: a Cilium alert is named by
// its policies and a Falco alert by its rule, so a route listing both takes
// either kind.

const cache = new Map<string, RegExp>();
function glob(p: string): RegExp {
  let re = cache.get(p);
  if (!re) {
    if (cache.size > 10_000) cache.clear();
    cache.set(p, (re = globToRegExp(p)));
  }
  return re;
}

const anyMatch = (patterns: readonly string[], value: string) => patterns.some((p) => glob(p).test(value));

/** "ns/name" matches a namespaced policy; "name" matches a policy of that name anywhere, clusterwide included. */
function policyMatches(patterns: readonly string[], a: StoredAlert): boolean {
  return a.policies.some((ref) => patterns.some((p) => (p.includes('/') ? glob(p).test(`${ref.namespace}/${ref.name}`) : glob(p).test(ref.name))));
}

export function routeMatches(route: RouteSpec, a: StoredAlert): boolean {
  const rank = SEVERITY_RANK[a.severity as Severity] ?? 0;
  if (rank < SEVERITY_RANK[route.min_severity]) return false;
  if (route.sources.length && !route.sources.includes(a.source as AlertSource)) return false;
  if (route.namespaces.length && !anyMatch(route.namespaces, a.namespace)) return false;
  if (route.agents.length && !anyMatch(route.agents, a.agent)) return false;
  if (route.policies.length || route.rules.length) {
    const byPolicy = route.policies.length > 0 && policyMatches(route.policies, a);
    const byRule = route.rules.length > 0 && a.rule !== '' && anyMatch(route.rules, a.rule);
    if (!byPolicy && !byRule) return false;
  }
  return true;
}
