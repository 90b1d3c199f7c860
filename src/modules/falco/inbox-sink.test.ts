import { describe, expect, it } from 'vitest';
import { falcoConfig, store } from '../../../test/falco/helpers.js';
import { capturingLogger } from '../../../test/helpers/logs.js';
import { until } from '../../../test/helpers/processes.js';
import { scenarioEvent, toFalcoJson } from '../../peers/falco/scenario.js';
import { loadFalcoDefaults } from './defaults.js';
import { startFalcoHttpInput } from './http.js';
import type { Inbox } from './inbox.js';
import { FalcoSink } from './sink.js';
import { FalcoAlertBuilder } from './to-alert.js';

// When writing the occurrences of answered events fails, the events stay in
// the inbox and a timer reads them back: that reading can fail too (the disk),
// and must then be retried, not thrown out of the timer.

interface Internals {
  inboxSink: { staging: { commit(inTx?: () => void): void }; store: Inbox | undefined };
}

describe('Falco HTTP inbox, storage failing', () => {
  it('retries reading the inbox back after a failed write, until the alerts are written', async () => {
    const s = store();
    const cfg = falcoConfig('falco:\n  http: {}\n  dedup_window: 0s\n');
    const builder = new FalcoAlertBuilder(cfg, loadFalcoDefaults());
    const { log, logs } = capturingLogger();
    const sink = new FalcoSink(s.db, s.alerts, { uuidCacheSize: 1000, windowMs: 0, builder, log, persistIntervalMs: 20 });
    const input = await startFalcoHttpInput({ listen: '127.0.0.1:0', maxBodyBytes: 1 << 20, builder, sink, log });
    try {
      const inner = (sink as unknown as Internals).inboxSink;
      const commit = inner.staging.commit.bind(inner.staging);
      let commitFailures = 1;
      // As a failing disk does: the transaction rolls back, and what was staged is gone from memory.
      inner.staging.commit = (inTx) =>
        commit(
          commitFailures-- > 0
            ? () => {
                throw new Error('disk I/O error');
              }
            : inTx,
        );
      const res = await fetch(`http://127.0.0.1:${input.port}/`, { method: 'POST', body: toFalcoJson(scenarioEvent(0)) });
      expect(res.status).toBe(200);
      // The inbox exists once the first event is appended: its read-back fails twice.
      const inbox = inner.store!;
      const read = inbox.read.bind(inbox);
      let readFailures = 2;
      inbox.read = (from, limit) => {
        if (readFailures-- > 0) throw new Error('EIO: i/o error, read');
        return read(from, limit);
      };
      await until(() => (s.flushed().length === 1 ? true : undefined), 10_000, 'the alert of the answered event');
      expect(readFailures).toBeLessThan(0);
      expect(logs.filter((l) => l.msg === 'Failed to read stored Falco events back; retrying').map((l) => l.error)).toEqual(['EIO: i/o error, read']);
    } finally {
      await input.close();
    }
  });
});
