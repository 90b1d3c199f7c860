import { ALERT_SOURCES, SEVERITIES, type AlertPayload } from '../../shared/alert/payload.js';
import { moduleAlertSources } from '../modules.js';

/**
 * The sources an agent may send through the tunnel: those whose module says
 * its agent part sends them, so an agent cannot forge an alert a module
 * raises on the server; the Kafka log, which only replicas write, carries
 * every source.
 */
export const AGENT_SOURCES: readonly string[] = [...moduleAlertSources.values()].filter((s) => s.fromAgent).map((s) => s.source);
export const LOG_SOURCES: readonly string[] = ALERT_SOURCES;

/** Checks what the store relies on; returns a reason when the payload is unusable. */
export function checkPayload(p: unknown, sources: readonly string[] = AGENT_SOURCES): string | undefined {
  if (typeof p !== 'object' || p === null) return 'payload is not a JSON object';
  const a = p as Partial<AlertPayload>;
  if (!sources.includes(a.source as string)) return `source must be ${sources.join(' or ')}, got ${JSON.stringify(a.source)}`;
  if (typeof a.fingerprint !== 'string' || a.fingerprint === '') return 'fingerprint is missing';
  if (!SEVERITIES.includes(a.severity as never)) return `severity ${JSON.stringify(a.severity)} is not one of ${SEVERITIES.join(', ')}`;
  for (const k of ['title', 'description', 'cluster', 'namespace', 'rule', 'first_seen', 'last_seen'] as const) {
    if (typeof a[k] !== 'string') return `${k} must be a string`;
  }
  if (typeof a.count !== 'number' || a.count < 1) return 'count must be a positive number';
  if (!Array.isArray(a.policies) || !Array.isArray(a.samples)) return 'policies and samples must be arrays';
  if (typeof a.labels !== 'object' || a.labels === null) return 'labels must be an object';
  return undefined;
}
