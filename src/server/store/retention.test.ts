import { readFileSync } from 'node:fs';
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
    expect(() => parseYamlConfig('retention:\n  max_age: 30d\n', 'server.yaml', serverConfigSchema)).toThrow(
      /server.yaml:2: retention.max_age: must be a duration/,
    );
    expect(() => parseYamlConfig('retention:\n  max_rows: 5\n', 'server.yaml', serverConfigSchema)).toThrow(/retention.max_rows: must be at least 100/);
  });

  it('purges in the background down to max_rows and keeps the newest', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const batch = [];
    for (let i = 0; i < 250; i++)
      batch.push({ id: `r-${i}`, payload: ciliumPayload({ fp: `f${i}`, time: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString() }) });
    store.ingest('edge', batch);
    const r = startRetention({ store, config: { max_age: 1e15, max_rows: 100, purge_interval: 60_000 }, log: createRootLogger({ level: 'silent' }) });
    expect(await r.runOnce()).toMatchObject({ alerts: 150 });
    r.stop();
    expect(store.counts('source', {})).toEqual([{ key: 'cilium', alerts: 100, events: 100 }]);
    expect(store.list({ limit: 1, order: 'asc' }).alerts[0]!.fingerprint).toBe('f150');
    db.close();
  });

  it('documents the defaults it uses: the retention block of docs/feed.md is the default config', () => {
    const doc = readFileSync(new URL('../../../docs/feed.md', import.meta.url), 'utf8');
    const block = /```yaml\n(retention:\n[\s\S]*?)```/.exec(doc)?.[1];
    expect(block, 'docs/feed.md has a retention example').toBeDefined();
    expect(parseYamlConfig(block!, 'docs/feed.md', serverConfigSchema).value.retention).toEqual(RETENTION_DEFAULTS);
    // And the config's defaults are the ones the server falls back to.
    expect(parseYamlConfig('retention: {}\n', 'server.yaml', serverConfigSchema).value.retention).toEqual(RETENTION_DEFAULTS);
  });

  it('purges on its own timer, without being asked, and again as the store grows', async () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const fill = (from: number, to: number) => {
      const batch = [];
      for (let i = from; i < to; i++)
        batch.push({ id: `bg-${i}`, payload: ciliumPayload({ fp: `bg${i}`, time: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString() }) });
      store.ingest('edge', batch);
    };
    const total = () => store.counts('source', {}).reduce((n, c) => n + c.alerts, 0);
    const waitFor = async (pred: () => boolean) => {
      const end = Date.now() + 5000;
      while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      expect(pred()).toBe(true);
    };
    fill(0, 180);
    const r = startRetention({ store, config: { max_age: 1e15, max_rows: 100, purge_interval: 30 }, log: createRootLogger({ level: 'silent' }) });
    try {
      await waitFor(() => total() === 100);
      fill(180, 260);
      await waitFor(() => total() === 100);
      expect(store.list({ limit: 1, order: 'asc' }).alerts[0]!.fingerprint).toBe('bg160');
    } finally {
      r.stop();
      db.close();
    }
  });
});
