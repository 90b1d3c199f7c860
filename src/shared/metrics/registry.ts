import { Registry, collectDefaultMetrics } from 'prom-client';

// One registry per process. Agent and server each expose it on /metrics.
export const registry = new Registry();
// The runtime's metrics under the names every Prometheus client library and
// Node.js dashboard uses (process_cpu_seconds_total, nodejs_heap_size_used_bytes):
// the scrape's job and instance labels say which process they are of.
collectDefaultMetrics({ register: registry });
