// @ts-check
// Times and names as the page writes them.
import { CLOCK_SKEW_MS } from './constants.js';
/** @import { Alert } from './api-types.js' */

/**
 * "5m ago", or "in 3h" for a time ahead of this browser's clock (a node whose
 * clock runs fast stamps its events in the future; they are shown as given).
 * @param {string} iso
 */
export function rel(iso) {
  const diff = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (Number.isNaN(diff)) return iso;
  const s = Math.abs(diff);
  if (s < 10) return 'just now';
  const span = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  return diff < 0 ? `in ${span}` : `${span} ago`;
}

/**
 * The time in the browser's locale and zone, the zone named ("…, 3:40:00 AM UTC",
 * "… GMT+2"): Falco stamps UTC and a bare local time reads as either; as given when it does not parse.
 * @param {string} iso
 */
export function local(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { timeZoneName: 'short' });
}

/** @param {Alert} a the Falco rule, or the Cilium policies that dropped the flow */
export function policyText(a) {
  if (a.rule) return a.rule;
  return a.policies.map((p) => (p.namespace ? `${p.namespace}/${p.name}` : p.name)).join(', ');
}

/** What the clock-skew flag says, on the list and in the detail. */
export const CLOCK_SKEW_TITLE = `An occurrence was stamped more than ${CLOCK_SKEW_MS / 60_000} minutes after the server received it: the node’s clock runs fast. Its times are shown as given.`;
