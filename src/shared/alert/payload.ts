// The alert payload both sources share: what the agent sends through the tunnel,
// what the server stores and what the feed, webhooks and Kafka export carry.
// alerts/alert.schema.json is the documented JSON schema of this type.

export const ALERT_SCHEMA = 'verdict.alert/v1';

export const SEVERITIES = ['critical', 'high', 'medium', 'low', 'info'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Higher is more severe; used for "minimum severity" filters. */
export const SEVERITY_RANK: Record<Severity, number> = { critical: 4, high: 3, medium: 2, low: 1, info: 0 };

/** gitops: raised by the server from the agents' sync reports (src/modules/gitops/report-service.ts), not sent by agents. */
export const ALERT_SOURCES = ['cilium', 'falco', 'gitops'] as const;
export type AlertSource = (typeof ALERT_SOURCES)[number];

export interface PolicyRef {
  kind: string; // CiliumNetworkPolicy | CiliumClusterwideNetworkPolicy | NetworkPolicy
  namespace: string; // "" for clusterwide
  name: string;
}

export interface EndpointSummary {
  namespace: string;
  pod: string;
  ip: string;
  port: number; // 0 when the protocol has none
  identity: number;
  labels: string[];
  workload: string; // "Deployment/web" or ""
  names: string[]; // DNS names Hubble saw for this side
}

export interface CiliumDetails {
  direction: 'ingress' | 'egress' | 'unknown';
  /** Drop reason name (POLICY_DENIED, POLICY_DENY, ...) or the code as a string. */
  reason: string;
  drop_reason: number;
  protocol: string; // TCP, UDP, ICMPv4, ICMPv6, SCTP, or ""
  source: EndpointSummary;
  destination: EndpointSummary;
  node: string;
  http?: { method: string; url: string };
  /** The query of a DNS flow; rcode (DNS response code) on responses and when not 0. */
  dns?: { query: string; qtypes?: string[]; rcode?: number };
  /** A Kafka request as Hubble reports it. */
  kafka?: { api_key: string; api_version: number; topic: string; correlation_id: number; error_code: number };
  icmp?: { type: number; code: number };
}

export interface FalcoDetails {
  rule: string;
  priority: string;
  source: string;
  hostname: string;
  output: string;
  tags: string[];
  output_fields: Record<string, unknown>;
}

export interface AlertPayload {
  schema: typeof ALERT_SCHEMA;
  source: AlertSource;
  /** Hex digest of what makes two occurrences "the same thing happening again". */
  fingerprint: string;
  severity: Severity;
  title: string;
  description: string;
  cluster: string;
  namespace: string;
  /** Occurrences folded into this event by the agent's de-duplication window. */
  count: number;
  first_seen: string; // RFC 3339
  last_seen: string;
  policies: PolicyRef[];
  rule: string;
  /** Small searchable dimensions: pod, hostname, container, direction... */
  labels: Record<string, string>;
  cilium?: CiliumDetails;
  falco?: FalcoDetails;
  /** A bounded sample of the raw flows or events behind this alert. */
  samples: unknown[];
}

export const MAX_SAMPLES = 5;

export function comparePolicyRefs(a: PolicyRef, b: PolicyRef): number {
  return a.kind < b.kind
    ? -1
    : a.kind > b.kind
      ? 1
      : a.namespace < b.namespace
        ? -1
        : a.namespace > b.namespace
          ? 1
          : a.name < b.name
            ? -1
            : a.name > b.name
              ? 1
              : 0;
}
