import { describe, expect, it } from 'vitest';
import { registry } from './registry.js';

describe('registry', () => {
  it('exposes the runtime metrics under the standard Prometheus names, without a doubled prefix', async () => {
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']));
    expect(names.filter((n) => /process_process|^verdict_process_/.test(n))).toEqual([]);
  });
});
