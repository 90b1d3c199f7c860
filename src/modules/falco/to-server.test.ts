import { describe, expect, it } from 'vitest';
import { falcoConfig, silent, store } from '../../../test/falco/helpers.js';
import { openServerDb } from '../../server/store/server-db.js';
import { AlertStore } from '../../server/store/alert-store.js';
import { until } from '../../../test/helpers/processes.js';
import { startFalco } from './agent.js';

// Falco events through the agent's HTTP input, its de-duplication and spool,
// into the server's store, read back as the feed reads them.

const TAGS = ['T1059', 'container', 'mitre_execution', 'shell'];

function event(second: number, priority: string, output: string, tags: string[] = TAGS): string {
  return JSON.stringify({
    time: `2026-12-07T03:00:${String(second).padStart(2, '0')}.000000000Z`,
    rule: 'Terminal shell in container',
    priority,
    source: 'syscall',
    hostname: 'node-1',
    output,
    tags,
    output_fields: { 'k8s.ns.name': 'shop', 'k8s.pod.name': 'web-1', 'container.id': 'abc', 'proc.name': 'bash' },
  });
}

async function run(yaml: string, posts: (url: string, spooled: () => number) => Promise<void>) {
  const s = store();
  const running = await startFalco(falcoConfig(`falco:\n  http: { listen: "127.0.0.1:0" }\n${yaml}`), { db: s.db, alerts: s.alerts, log: silent });
  try {
    await posts(`http://${running.httpAddress}/falco`, () => s.outbox.size);
  } finally {
    await running.stop();
  }
  const server = new AlertStore(openServerDb(':memory:'));
  const sent = s.flushed();
  // One batch each, as the agent sends alerts spooled apart.
  for (const [i, payload] of sent.entries()) server.ingest('edge', [{ id: `ev-${i}`, payload }]);
  return { server, sent };
}

async function post(url: string, body: string): Promise<void> {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  expect(r.status).toBe(200);
}

describe('Falco events in the server store', () => {
  it('are found by their tags, MITRE ids and words of them alike', async () => {
    const { server } = await run('  dedup_window: 0s\n', async (url) => {
      await post(url, event(1, 'Notice', 'A shell was spawned'));
      await post(url, event(2, 'Notice', 'Something else', ['filesystem']).replace('web-1', 'web-2'));
    });
    const q = (text: string) => server.list({ limit: 10, q: text }).alerts.map((a) => a.labels.pod);
    expect(q('T1059')).toEqual(['web-1']);
    expect(q('mitre_execution')).toEqual(['web-1']);
    expect(q('filesystem')).toEqual(['web-2']);
    expect(q('shell T1059')).toEqual(['web-1']);
  });

  it('show, for the occurrence that raised the severity inside the dedup window, the text and labels of the event that raised it', async () => {
    const { server, sent } = await run('  dedup_window: 1m\n', async (url, spooled) => {
      await post(url, event(1, 'Notice', 'notice 1'));
      // Sent at once once the inbox commits it (answered when stored, committed right after); what follows folds into the window.
      await until(() => (spooled() > 0 ? true : undefined), 10_000, 'the first event spooled');
      for (const [i, p, out] of [
        [2, 'Notice', 'notice 2'],
        [3, 'Notice', 'notice 3'],
        [4, 'Critical', 'crit 4'],
        [5, 'Notice', 'notice 5'],
      ] as const)
        await post(url, event(i, p, out));
    });
    expect(sent.map((a) => [a.count, a.severity])).toEqual([
      [1, 'low'],
      [4, 'critical'],
    ]);
    const [a] = server.list({ limit: 10 }).alerts;
    const d = server.detail(a!.id)!;
    expect(d.alert).toMatchObject({ count: 5, severity: 'critical', description: 'crit 4' });
    expect(d.severity_occurrence).toMatchObject({ severity: 'critical', description: 'crit 4', labels: { priority: 'Critical' } });
  });
});
