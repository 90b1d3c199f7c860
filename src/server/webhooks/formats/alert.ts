import { moduleAlertSources } from '../../modules.js';
import type { StoredAlert } from '../../store/alert-store.js';

// What a delivery says about an alert, frozen when the delivery is recorded:
// every try sends the same body, and a receiver sees the alert as it was when
// the event happened (the count at opening, the time it was resolved).

export const DELIVERY_EVENTS = ['triggered', 'repeated', 'resolved'] as const;
export type DeliveryEvent = (typeof DELIVERY_EVENTS)[number];

/** The stored alert's fields a webhook sends; not the feed's bookkeeping (events, seq, ...) nor the samples. */
type SentAsStored =
  | 'id'
  | 'source'
  | 'severity'
  | 'title'
  | 'description'
  | 'agent'
  | 'cluster'
  | 'namespace'
  | 'policies'
  | 'rule'
  | 'labels'
  | 'count'
  | 'first_seen'
  | 'last_seen'
  | 'fingerprint'
  | 'details'
  | 'status';

export interface WebhookAlert extends Pick<StoredAlert, SentAsStored> {
  /** When the alert was resolved; null while it is open. */
  resolved_at: string | null;
  /** The alert in the feed API, when webhooks.external_url is set. */
  url: string | null;
}

export interface DeliveryItem {
  event: DeliveryEvent;
  alert: WebhookAlert;
}

export interface RenderContext {
  integration: string;
  externalUrl: string;
  /** When the delivery was recorded (RFC 3339); the payload's own timestamp. */
  createdAt: string;
  /** Whether the integration groups alerts (group_window). */
  grouped: boolean;
  /** The delivery's webhook-id; a group's names exactly its alerts (the same on every replica that groups them alike). */
  webhookId?: string | undefined;
}

export function alertUrl(externalUrl: string, id: number): string | null {
  return externalUrl ? `${externalUrl.replace(/\/+$/, '')}/api/v1/alerts/${id}` : null;
}

/**
 * Replaces lone UTF-16 surrogates (a text cut in the middle of an emoji) with
 * U+FFFD, so every body is valid Unicode: JSON.stringify would send them as
 * "\ud83d" escapes, which strict parsers (Ruby's, GitLab's) refuse.
 */
export function wellFormed(s: string): string {
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

export function snapshot(a: StoredAlert, event: DeliveryEvent, at: string, externalUrl: string): DeliveryItem {
  return {
    event,
    alert: {
      id: a.id,
      status: a.status,
      source: a.source,
      severity: a.severity,
      title: wellFormed(a.title),
      description: wellFormed(a.description),
      agent: a.agent,
      cluster: a.cluster,
      namespace: a.namespace,
      policies: a.policies,
      rule: a.rule,
      labels: a.labels,
      count: a.count,
      first_seen: a.first_seen,
      last_seen: a.last_seen,
      resolved_at: event === 'resolved' ? at : null,
      fingerprint: a.fingerprint,
      details: a.details,
      url: alertUrl(externalUrl, a.id),
    },
  };
}

/** Pods or hosts the alert is about, for formats that have a "hosts" notion: the alert's module reads them from its details. */
export function hostsOf(a: WebhookAlert): string[] {
  return [...new Set(moduleAlertSources.get(a.source)?.hosts?.(a.details) ?? [])];
}

/** The tool that raised the alert, as its module names it (GitLab's monitoring_tool). */
export function monitoringToolOf(a: WebhookAlert): string {
  return moduleAlertSources.get(a.source)?.monitoringTool ?? `Verdict (${a.source})`;
}

/** The alert's Alertmanager alertname, as its module names it. */
export function alertnameOf(a: WebhookAlert): string {
  return moduleAlertSources.get(a.source)?.alertname(a) ?? (a.rule || a.source);
}
