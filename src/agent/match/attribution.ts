import type { PolicyRef } from '../../shared/alert/payload.js';

/** Why a dropped flow was dropped, and which labelled policies are responsible. */
export interface Attribution {
  direction: 'ingress' | 'egress';
  /** POLICY_DENY (explicit deny rule) or POLICY_DENIED (default deny). */
  reason: 'POLICY_DENY' | 'POLICY_DENIED';
  /** Responsible policies annotated app.gitlab.com/alert: "true", sorted by kind, namespace, name. */
  policies: PolicyRef[];
}
