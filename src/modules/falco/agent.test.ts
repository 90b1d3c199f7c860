import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { falcoConfig, fixtureLines, silent, store, tmp } from '../../../test/falco/helpers.js';
import { startFalcoPoster } from '../../peers/falco/falco-poster.js';
import { SCENARIO_LENGTH } from '../../peers/falco/scenario.js';
import { registry } from '../../shared/metrics/registry.js';
import { falcoModule, startFalco } from './agent.js';

async function until(fn: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('falco module', () => {
  it('runs http, file and stdin inputs together into one store', async () => {
    const dir = tmp();
    const path = join(dir, 'events.json');
    writeFileSync(path, '');
    const s = store(join(dir, 'data'));
    const stdin = new PassThrough();
    const block = falcoConfig(
      `falco:\n  http: { listen: "127.0.0.1:0" }\n  file: { path: ${JSON.stringify(path)}, poll_interval: 20ms }\n  stdin: true\n  dedup_window: 0s\n`,
    );
    const running = await startFalco(block, { db: s.db, alerts: s.alerts, log: silent }, { stdin });
    try {
      const lines = fixtureLines();
      appendFileSync(path, `${lines[0]}\n${lines[1]}\n`);
      stdin.write(`${lines[2]}\n`);
      const r = await fetch(`http://${running.httpAddress}/falco`, { method: 'POST', body: lines[3], headers: { 'content-type': 'application/json' } });
      expect(r.status).toBe(200);
      await until(() => s.outbox.size === 4, 'four alerts');
    } finally {
      await running.stop();
    }
  });

  it('takes the built-in Falco source (demo poster) with uuids and gzip', async () => {
    const s = store();
    const block = falcoConfig('falco:\n  http: { listen: "127.0.0.1:0" }\n  dedup_window: 0s\n');
    const running = await startFalco(block, { db: s.db, alerts: s.alerts, log: silent });
    try {
      const stats = await startFalcoPoster({
        url: `http://${running.httpAddress}/`,
        intervalMs: 1,
        signal: new AbortController().signal,
        log: silent,
        repeat: false,
        uuid: true,
        gzip: true,
      });
      expect(stats).toEqual({ sent: SCENARIO_LENGTH, failed: 0 });
      expect(s.outbox.size).toBe(SCENARIO_LENGTH);
      const namespaces = new Set(s.outbox.read(0, 100).map((r) => (JSON.parse(r.payload.toString()) as { namespace: string }).namespace));
      expect(namespaces).toEqual(new Set(['shop', 'db']));
    } finally {
      await running.stop();
    }
  });

  it('shows every outcome of each configured input at 0 from the start, so failed and invalid can be alerted on', async () => {
    const dir = tmp();
    const s = store();
    const block = falcoConfig(
      `falco:\n  http: { listen: "127.0.0.1:0" }\n  file: { path: ${JSON.stringify(join(dir, 'none.json'))} }\n  stdin: true\n  grpc: { address: "unix://${join(dir, 'falco.sock')}" }\n`,
    );
    const running = await startFalco(block, { db: s.db, alerts: s.alerts, log: silent }, { stdin: new PassThrough() });
    try {
      const text = await registry.getSingleMetricAsString('verdict_agent_falco_events_total');
      const lines = ['accepted', 'duplicate', 'ignored', 'below_minimum_priority', 'invalid'];
      const outcomes = {
        http: [...lines, 'failed', 'unwritable'],
        file: lines,
        stdin: lines,
        grpc: ['accepted', 'ignored', 'below_minimum_priority', 'invalid', 'failed'],
      };
      for (const [input, list] of Object.entries(outcomes)) {
        for (const outcome of list) expect(text).toMatch(new RegExp(`^verdict_agent_falco_events_total\\{input="${input}",outcome="${outcome}"\\} \\d+$`, 'm'));
      }
      // Nothing failed here: the series are there at 0.
      for (const input of ['http', 'grpc']) expect(text).toContain(`verdict_agent_falco_events_total{input="${input}",outcome="failed"} 0`);
    } finally {
      await running.stop();
    }
  });

  it('runs as an agent module until its signal fires', async () => {
    const s = store();
    const abort = new AbortController();
    const block = falcoConfig('falco:\n  http: { listen: "127.0.0.1:0" }\n');
    const done = falcoModule.run(block, { db: s.db, alerts: s.alerts, log: silent, dataDir: ':memory:', agentName: 'a', files: [] }, abort.signal);
    await new Promise((r) => setTimeout(r, 100));
    abort.abort();
    await done;
  });

  it('fails with what to change when the address is taken', async () => {
    const s = store();
    const first = await startFalco(falcoConfig('falco:\n  http: { listen: "127.0.0.1:0" }\n'), { db: s.db, alerts: s.alerts, log: silent });
    try {
      await expect(
        startFalco(falcoConfig(`falco:\n  http: { listen: "${first.httpAddress}" }\n`), { db: s.db, alerts: s.alerts, log: silent }),
      ).rejects.toThrow(
        /^cannot listen for Falco events on 127\.0\.0\.1:\d+: the address is in use by another process; stop it, or set falco\.http\.listen to a free port$/,
      );
    } finally {
      await first.stop();
    }
  });
});
