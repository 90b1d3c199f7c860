import { Registry, collectDefaultMetrics } from 'prom-client';

// One registry per process. Agent and server each expose it on /metrics.
export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'verdict_process_' });
