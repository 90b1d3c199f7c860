import { Counter, Gauge, Histogram } from 'prom-client';
import { registry } from '../../shared/metrics/registry.js';

// Per integration (label `integration`, its name). Names are bounded by the
// operator's config and the admin API, so the label stays low-cardinality.

export const delivered = new Counter({
  name: 'verdict_webhook_delivered_total',
  help: 'Webhook deliveries the endpoint accepted (2xx)',
  labelNames: ['integration'],
  registers: [registry],
});
export const failedAttempts = new Counter({
  name: 'verdict_webhook_failed_attempts_total',
  help: 'Webhook tries that failed, by reason (http_4xx, http_5xx, http_3xx, timeout, network, refused_address, config)',
  labelNames: ['integration', 'reason'],
  registers: [registry],
});
export const retried = new Counter({
  name: 'verdict_webhook_retries_total',
  help: 'Webhook deliveries scheduled for another try',
  labelNames: ['integration'],
  registers: [registry],
});
export const deadLettered = new Counter({
  name: 'verdict_webhook_dead_lettered_total',
  help: 'Webhook deliveries given up after the last try (or a 410), kept as dead letters',
  labelNames: ['integration'],
  registers: [registry],
});
export const disabledTotal = new Counter({
  name: 'verdict_webhook_endpoints_disabled_total',
  help: 'Integrations disabled because their endpoint answered 410 Gone',
  labelNames: ['integration'],
  registers: [registry],
});
export const latency = new Histogram({
  name: 'verdict_webhook_attempt_duration_seconds',
  help: 'Time of one webhook try, from connecting to the end of the response',
  labelNames: ['integration'],
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30],
  registers: [registry],
});

type BacklogSource = () => { integration: string; pending: number; dead: number }[];
const backlogSources = new Set<BacklogSource>();

/** Each running webhooks service reports its outbox when /metrics is scraped. */
export function addBacklogSource(fn: BacklogSource): () => void {
  backlogSources.add(fn);
  return () => backlogSources.delete(fn);
}

export const backlog = new Gauge({
  name: 'verdict_webhook_deliveries',
  help: 'Webhook deliveries in the outbox by state (pending: waiting for a try; dead: dead letters to look at)',
  labelNames: ['integration', 'state'],
  registers: [registry],
  collect() {
    this.reset();
    for (const src of backlogSources) {
      for (const r of src()) {
        this.set({ integration: r.integration, state: 'pending' }, r.pending);
        this.set({ integration: r.integration, state: 'dead' }, r.dead);
      }
    }
  },
});
