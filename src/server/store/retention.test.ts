import { describe, expect, it } from 'vitest';
import { parseYamlConfig } from '../../shared/config/schema.js';
import { serverConfigSchema } from '../../shared/config/server-config.js';
import { createRootLogger } from '../../shared/log/logger.js';
import { AlertStore } from './alert-store.js';
import { RETENTION_DEFAULTS, startRetention } from './retention.js';
import { openServerDb } from './server-db.js';
import { ciliumPayload } from './test-payloads.js';

describe('retention', () => {
  it('reads the retention block of the server config, with defaults', () => {
    const none = parseYamlConfig('data_dir: /tmp/x\n', 'server.yaml', serverConfigSchema).value;
    expect(none.retention).toBeUndefined();
    const some = parseYamlConfig('retention:\n  max_rows: 1000\n', 'server.yaml', serverConfigSchema).value;
    expect(some.retention).toEqual({ max_age: RETENTION_DEFAULTS.max_age, max_rows: 1000, purge_interval: RETENTION_DEFAULTS.purge_interval });
    expect(() => parseYamlConfig('retention:\n  max_age: 30d\n', 'server.yaml', serverConfigSchema)).toThrow(/server.yaml:2: retention.max_age: must be a duration/);
    expect(() => parseYamlConfig('retention:\n  max_rows: 5\n', 'server.yaml', serverConfigSchema)).toThrow(/retention.max_rows: must be at least 100/);
  });

  it('purges in the background down to max_rows and keeps the newest', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const batch = [];
    for (let i = 0; i < 250; i++) batch.push({ id: `r-${i}`, payload: ciliumPayload({ fp: `f${i}`, time: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString() }) });
    store.ingest('edge', batch);
    const r = startRetention({ store, config: { max_age: 1e15, max_rows: 100, purge_interval: 60_000 }, log: createRootLogger({ level: 'silent' }) });
    expect(await r.runOnce()).toMatchObject({ alerts: 150 });
    r.stop();
    expect(store.counts('source', {})).toEqual([{ key: 'cilium', alerts: 100, events: 100 }]);
    expect(store.list({ limit: 1, order: 'asc' }).alerts[0]!.fingerprint).toBe('f150');
    db.close();
  });
});
