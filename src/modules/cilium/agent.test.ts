import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { HubbleRelayPeer } from '../../peers/hubble-relay/relay-peer.js';
import type { AlertPayload } from '../../shared/alert/payload.js';
import { parseAgentConfig } from '../../server/config/agent-config.js';
import { AlertAggregator } from '../../agent/alerts/aggregator.js';
import { FlowCursor } from './flow-cursor.js';
import { openAgentDb } from '../../agent/spool/agent-db.js';
import { Spool } from '../../agent/spool/spool.js';
import { createCiliumModule } from './agent.js';
import { PAYMENTS_INGRESS, paymentsDrop } from '../../../test/helpers/policies.js';

const log = pino({ level: 'silent' });

const drop = (at: Date, n: number) => paymentsDrop(n, { at });

const until = async (f: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

let relay: HubbleRelayPeer | undefined;
afterEach(async () => {
  await relay?.close();
  relay = undefined;
});

/**
 * A module over a Relay peer holding one drop (flow-1) just after a position an
 * earlier run saved (flow-0), with the payments policy on disk.
 */
async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'verdict-cilium-mod-'));
  writeFileSync(join(dir, 'payments.yaml'), PAYMENTS_INGRESS);
  const peer = new HubbleRelayPeer();
  relay = peer;
  const addr = await peer.listen('127.0.0.1:0');
  const block = parseAgentConfig(
    `cilium:\n  hubble_relay_address: ${addr}\n  cluster_name: test\n  dedup_window: 1m\n  kubernetes_policies: 'off'\n`,
    'config.yaml',
  ).value.cilium!;
  const db = openAgentDb(':memory:');
  const outbox = new Spool(db, { maxBytes: 1e9, log });
  const alerts = new AlertAggregator(db, outbox, { log });
  const base = Date.now() - 60_000;
  const saved = new FlowCursor(db, addr);
  saved.advance(drop(new Date(base), 0));
  saved.persist();
  peer.push([drop(new Date(base + 1000), 1)]);
  return { dir, relay: peer, block, db, outbox, alerts, base };
}

describe('cilium module', () => {
  it('logs policy warnings with file, policy and field: a field the API server would drop', async () => {
    const { dir, block, db, alerts } = await setup();
    writeFileSync(
      join(dir, 'api.yaml'),
      'apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: api, namespace: shop}\nspec:\n  endpointSelector: {}\n  ingress:\n    - toPorts: [{ports: [{port: "80"}], rules: {HTTP: [{method: GET}]}}]\n',
    );
    const lines: { level: number; msg: string; warning?: string }[] = [];
    const captured = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
    const abort = new AbortController();
    const run = createCiliumModule({ policyPaths: [dir] }).run(block, { log: captured, db, alerts, dataDir: dir, agentName: 'edge', files: [] }, abort.signal);
    await until(() => lines.some((l) => l.msg === 'Loaded network policies'));
    abort.abort();
    await run;
    expect(lines.filter((l) => l.level === 40).map((l) => l.warning)).toEqual([
      `${join(dir, 'api.yaml')}:1: CiliumNetworkPolicy/shop/api: spec.ingress[0].toPorts[0].rules.HTTP: unknown field (did you mean http?); the API server drops fields it does not know, so Cilium never sees it and this part of the policy does nothing: rename it to http`,
    ]);
    db.close();
  }, 30_000);

  it('stores the alerts of flows arriving together in one transaction, with the cursor', async () => {
    const { dir, relay, block, db, outbox, alerts, base } = await setup();
    const adds: number[] = [];
    const counting = Object.create(alerts) as AlertAggregator;
    // Every way the module can write alerts, counted per transaction.
    counting.add = (list, windowMs, inTx) => {
      adds.push(list.length);
      alerts.add(list, windowMs, inTx);
    };
    counting.staging = () => {
      const s = alerts.staging();
      const commit = s.commit.bind(s);
      s.commit = (inTx) => {
        adds.push(s.size);
        commit(inTx);
      };
      return s;
    };
    const abort = new AbortController();
    const run = createCiliumModule({ policyPaths: [dir] }).run(block, { log, db, alerts: counting, dataDir: dir, agentName: 'edge', files: [] }, abort.signal);
    await until(() => alerts.pending === 1);
    relay.push(Array.from({ length: 40 }, (_, i) => drop(new Date(base + 2000 + i), 10 + i)));
    await until(() => adds.reduce((a, b) => a + b, 0) === 41);
    abort.abort();
    await run;
    // 41 alerts in a few transactions (one per flow before group commit), however the stream splits them on a busy machine.
    expect(adds.filter((n) => n > 0).length).toBeLessThanOrEqual(8);
    const saved = db.prepare('SELECT seconds, nanos FROM hubble_cursor').get() as { seconds: number; nanos: number };
    expect(saved.seconds * 1000 + Math.floor(saved.nanos / 1e6)).toBe(base + 2039);
    alerts.flush(true);
    expect(outbox.read(0, 100).reduce((n, r) => n + (JSON.parse(r.payload.toString()) as AlertPayload).count, 0)).toBe(41);
    db.close();
  }, 30_000);

  it('loses no alert when storing it fails: the module fails without saving the cursor past the flow, and a restart reads it again', async () => {
    const { dir, block, db, outbox, alerts, base } = await setup();

    // Saving the alert (with the cursor) fails once.
    db.exec("CREATE TEMP TRIGGER fail BEFORE INSERT ON pending_alert_counts BEGIN SELECT RAISE(FAIL, 'disk full'); END");
    const mod = createCiliumModule({ policyPaths: [dir] });
    const ctx = { log, db, alerts, dataDir: dir, agentName: 'edge', files: [] };
    const abort = new AbortController();
    await expect(mod.run(block, ctx, abort.signal)).rejects.toThrow(/storing an alert failed: disk full/);
    // Nothing half-stored: no pending group in memory that is not on disk.
    expect(alerts.pending).toBe(0);
    expect((db.prepare('SELECT seconds FROM hubble_cursor').get() as { seconds: number }).seconds).toBe(Math.floor(base / 1000));

    // The manager runs it again: the flow comes again from the saved position and is stored once.
    db.exec('DROP TRIGGER fail');
    const again = new AbortController();
    const run = mod.run(block, ctx, again.signal);
    await until(() => alerts.pending === 1);
    again.abort();
    await run;
    alerts.flush(true);
    const out = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
    expect(out.map((a) => [a.title, a.count])).toEqual([['Ingress not allowed: shop/frontend-1 -> shop/payments-0:8443/TCP', 1]]);
    db.close();
  }, 30_000);

  it("keeps the aggregator in step with the disk when saving the cursor fails in the alert's transaction", async () => {
    const { dir, block, db, alerts } = await setup();
    db.exec("CREATE TEMP TRIGGER fail BEFORE UPDATE ON hubble_cursor BEGIN SELECT RAISE(FAIL, 'disk full'); END");
    const mod = createCiliumModule({ policyPaths: [dir] });
    await expect(mod.run(block, { log, db, alerts, dataDir: dir, agentName: 'edge', files: [] }, new AbortController().signal)).rejects.toThrow(/disk full/);
    // The alert's rows rolled back with the cursor: the aggregator holds no group that is not stored.
    expect((db.prepare('SELECT count(*) AS n FROM pending_alerts').get() as { n: number }).n).toBe(0);
    expect(alerts.pending).toBe(0);
    db.close();
  }, 30_000);
});
