import type { PolicyRef } from '../../../shared/alert/payload.js';

/**
 * Why a dropped flow was dropped, and which labelled policies are responsible.
 * The engine caches and shares these objects between flows: they are frozen,
 * copy before changing one.
 */
export interface Attribution {
  direction: 'ingress' | 'egress';
  /** POLICY_DENY (explicit deny rule) or POLICY_DENIED (default deny). */
  reason: 'POLICY_DENY' | 'POLICY_DENIED';
  /** Responsible policies annotated app.gitlab.com/alert: "true", sorted by kind, namespace, name. */
  policies: PolicyRef[];
  /**
   * Every responsible policy, annotated or not and whoever owns its namespace,
   * in the same order; `policies` is the part of it that may raise alerts.
   */
  responsible?: PolicyRef[];
  /** Set when the request was refused by L7 (HTTP or DNS) rules rather than at L3/L4. */
  l7?: boolean;
}
