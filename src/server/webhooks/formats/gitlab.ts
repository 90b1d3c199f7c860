import { hostsOf, type DeliveryItem, type RenderContext } from './alert.js';

// GitLab's HTTP endpoint alert integration ("Alerts > HTTP endpoint"). GitLab
// de-duplicates open alerts by fingerprint and resolves the one whose
// fingerprint matches a payload carrying end_time. Extra keys are kept by GitLab
// and shown in the alert's details.
export function renderGitlab(items: readonly DeliveryItem[], _ctx: RenderContext): string {
  const { event, alert: a } = items[0]!;
  const body: Record<string, unknown> = {
    title: a.title.slice(0, 200),
    description: a.description.slice(0, 1000),
    start_time: a.first_seen,
    severity: a.severity,
    // Verdict's fingerprint is per agent; two clusters seeing the same thing are two alerts.
    fingerprint: `${a.agent}/${a.fingerprint}`,
    monitoring_tool: a.source === 'falco' ? 'Verdict (Falco)' : 'Verdict (Cilium)',
    service: a.namespace ? `${a.cluster}/${a.namespace}` : a.cluster,
    hosts: hostsOf(a),
  };
  if (event === 'resolved') body.end_time = a.resolved_at;
  body.verdict_alert_id = a.id;
  body.verdict_count = a.count;
  if (a.url) body.verdict_url = a.url;
  return JSON.stringify(body);
}
