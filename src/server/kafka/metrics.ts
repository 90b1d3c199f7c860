import { Registry } from 'prom-client';
import { registry } from '../../shared/metrics/registry.js';

// The Kafka metrics (verdict_kafka_*) are made when their files are imported,
// which a server without Kafka does too (the CLI reads delivery.ts's steps, the
// server imports the replica): they are kept in a registry of their own and
// shown on /metrics only once a server starts with kafka configured, so a
// server without Kafka does not export series that can only ever be zero.
export const kafkaRegistry = new Registry();

/** Shows the Kafka metrics on the process's /metrics (idempotent: test processes start several replicas). */
export function exposeKafkaMetrics(): void {
  for (const { name } of kafkaRegistry.getMetricsAsArray()) {
    const metric = kafkaRegistry.getSingleMetric(name);
    if (metric && !registry.getSingleMetric(name)) registry.registerMetric(metric);
  }
}
