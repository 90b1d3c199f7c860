import { createHash } from 'node:crypto';
import { alertnameOf, type DeliveryItem, type RenderContext, type WebhookAlert } from './alert.js';

// Prometheus Alertmanager's webhook_config payload, version 4, so receivers
// written for Alertmanager (and their tooling) take Verdict alerts unchanged.

const ZERO_TIME = '0001-01-01T00:00:00Z';

function labelName(k: string): string {
  const n = k.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(n) ? n : `_${n}`;
}

export function alertLabels(a: WebhookAlert): Record<string, string> {
  const labels: Record<string, string> = {};
  // The alert's own labels first, so Verdict's names win on a clash.
  for (const [k, v] of Object.entries(a.labels)) labels[labelName(k)] = v;
  Object.assign(labels, {
    alertname: alertnameOf(a),
    severity: a.severity,
    source: a.source,
    agent: a.agent,
    cluster: a.cluster,
    // What identifies the alert on every server replica (the feed's numeric id is per replica):
    // the firing and the resolved notification carry the same labels whichever replica sends them.
    verdict_fingerprint: a.fingerprint,
  });
  if (a.namespace) labels.namespace = a.namespace;
  if (a.rule) labels.rule = a.rule;
  if (a.policies.length) labels.policy = a.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)).join(',');
  return labels;
}

function common(maps: Record<string, string>[]): Record<string, string> {
  const [first, ...rest] = maps;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(first ?? {})) if (rest.every((m) => m[k] === v)) out[k] = v;
  return out;
}

const quote = (m: Record<string, string>) =>
  `{${Object.keys(m)
    .sort()
    .map((k) => `${k}=${JSON.stringify(m[k])}`)
    .join(',')}}`;

export function renderAlertmanager(items: readonly DeliveryItem[], ctx: RenderContext): string {
  const resolved = items[0]!.event === 'resolved';
  const alerts = items.map(({ alert: a }) => {
    // The feed's id of the replica that recorded the delivery: an annotation, since another replica's differs.
    const annotations: Record<string, string> = { summary: a.title, description: a.description, verdict_alert_id: String(a.id) };
    if (a.url) annotations.verdict_url = a.url;
    return {
      status: resolved ? 'resolved' : 'firing',
      labels: alertLabels(a),
      annotations,
      startsAt: a.first_seen,
      endsAt: resolved ? (a.resolved_at ?? ZERO_TIME) : ZERO_TIME,
      generatorURL: a.url ?? '',
      fingerprint: createHash('sha256').update(`${a.agent}/${a.fingerprint}`).digest('hex').slice(0, 16),
    };
  });
  // Without a group window each alert is its own group, keyed by agent and
  // fingerprint (the same on every replica), so a receiver can match the
  // resolved notification to the firing one. A grouped delivery carries the
  // alerts of one event and window, not the whole group Alertmanager would
  // (its firing and resolved alerts): it is a group of its own, keyed by its
  // webhook-id, so a `resolved` one never closes what another reported firing.
  const first = items[0]!.alert;
  const groupLabels: Record<string, string> = ctx.grouped ? {} : { agent: first.agent, verdict_fingerprint: first.fingerprint };
  const route = ctx.grouped
    ? `{verdict_integration=${JSON.stringify(ctx.integration)},verdict_delivery=${JSON.stringify(ctx.webhookId ?? '')}}`
    : `{verdict_integration=${JSON.stringify(ctx.integration)}}`;
  return JSON.stringify({
    version: '4',
    groupKey: `{}/${route}:${quote(groupLabels)}`,
    truncatedAlerts: 0,
    status: resolved ? 'resolved' : 'firing',
    receiver: ctx.integration,
    groupLabels,
    commonLabels: common(alerts.map((a) => a.labels)),
    commonAnnotations: common(alerts.map((a) => a.annotations)),
    externalURL: ctx.externalUrl,
    alerts,
  });
}
