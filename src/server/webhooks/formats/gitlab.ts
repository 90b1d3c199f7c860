import { clipChars } from '../../../shared/text/cut.js';
import { hostsOf, monitoringToolOf, type DeliveryItem, type RenderContext } from './alert.js';

// GitLab's HTTP endpoint alert integration ("Alerts > HTTP endpoint"). GitLab
// de-duplicates open alerts by fingerprint and resolves the one whose
// fingerprint matches a payload carrying end_time. Extra keys are kept by GitLab
// and shown in the alert's details.
//
// GitLab refuses (400) an alert whose fields are longer than its model allows
// (AlertManagement::Alert: title 200, description 1000, service 100,
// monitoring_tool 100, hosts 255 characters joined); a refused alert would be
// retried until it is a dead letter, so the fields are cut to fit here.
const GITLAB_LIMITS = { title: 200, description: 1000, service: 100, hostsJoined: 255 } as const;

/** Hosts whose joined length fits GitLab's limit, the last one cut if need be. */
function fitHosts(hosts: readonly string[]): string[] {
  const out: string[] = [];
  let room: number = GITLAB_LIMITS.hostsJoined;
  for (const h of hosts) {
    if (room <= 0) break;
    const c = clipChars(h, room);
    out.push(c);
    room -= Array.from(c).length;
  }
  return out;
}

export function renderGitlab(items: readonly DeliveryItem[], _ctx: RenderContext): string {
  const { event, alert: a } = items[0]!;
  const body: Record<string, unknown> = {
    title: clipChars(a.title, GITLAB_LIMITS.title),
    description: clipChars(a.description, GITLAB_LIMITS.description),
    start_time: a.first_seen,
    severity: a.severity,
    // Verdict's fingerprint is per agent; two clusters seeing the same thing are two alerts.
    fingerprint: `${a.agent}/${a.fingerprint}`,
    monitoring_tool: monitoringToolOf(a),
    // No cluster name (none configured, or an alert the server raised): "shop", not "/shop".
    service: clipChars([a.cluster, a.namespace].filter(Boolean).join('/'), GITLAB_LIMITS.service),
    hosts: fitHosts(hostsOf(a)),
  };
  if (event === 'resolved') body.end_time = a.resolved_at;
  body.verdict_alert_id = a.id;
  body.verdict_count = a.count;
  if (a.url) body.verdict_url = a.url;
  return JSON.stringify(body);
}
