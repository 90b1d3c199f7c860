// The agent's Cilium module (as `verdict agent --kubeconfig` runs it) with
// cilium.kubernetes_policies at its default, auto: it watches the real API
// server's policies and blames Relay's dropped flows on them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertAggregator } from '../../src/agent/alerts/aggregator.js';
import { openAgentDb } from '../../src/agent/spool/agent-db.js';
import { Spool } from '../../src/agent/spool/spool.js';
import { HubbleRelayPeer } from '../../src/peers/hubble-relay/relay-peer.js';
import { parseAgentConfig } from '../../src/server/config/agent-config.js';
import { createCiliumModule } from '../../src/modules/cilium/agent.js';
import type { AlertPayload } from '../../src/shared/alert/payload.js';
import { startKube, type Kube } from '../helpers/kube.js';
import { paymentsDrop } from '../helpers/policies.js';
import { apply, installCrds, must, namespace, until } from './policies.js';

let kube: Kube;
beforeAll(async () => {
  kube = await startKube();
  await installCrds(kube);
  await apply(kube, namespace('shop'));
}, 300_000);
afterAll(async () => {
  await kube?.stop();
}, 60_000);

const PAYMENTS = {
  apiVersion: 'cilium.io/v2',
  kind: 'CiliumNetworkPolicy',
  metadata: { name: 'payments-ingress', namespace: 'shop', annotations: { 'app.gitlab.com/alert': 'true' } },
  spec: { endpointSelector: { matchLabels: { app: 'payments' } }, ingress: [{ fromEndpoints: [{ matchLabels: { app: 'cart' } }] }] },
};

const drop = (n: number) => paymentsDrop(n, { node: 'node-1' });

describe('cilium module with --kubeconfig', () => {
  it('kubernetes_policies: auto watches the cluster given by --kubeconfig; kubectl apply and delete change which drops alert', async () => {
    await apply(kube, PAYMENTS);
    const relay = new HubbleRelayPeer();
    const addr = await relay.listen('127.0.0.1:0');
    const block = parseAgentConfig(`cilium:\n  hubble_relay_address: ${addr}\n  dedup_window: 0s\n`, 'config.yaml').value.cilium!;
    expect(block.kubernetes_policies).toBe('auto');
    const db = openAgentDb(':memory:');
    const quiet = pino({ level: 'silent' });
    const outbox = new Spool(db, { maxBytes: 1e9, log: quiet });
    const alerts = new AlertAggregator(db, outbox, { log: quiet });
    const lines: { msg: string; server?: string; credentials?: string; from_kubernetes?: number }[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
    const abort = new AbortController();
    const dir = mkdtempSync(join(tmpdir(), 'verdict-cilium-kube-'));
    const run = createCiliumModule({ policyPaths: [], kubeconfig: kube.kubeconfig }).run(
      block,
      { log, db, alerts, dataDir: dir, agentName: 'edge', files: [] },
      abort.signal,
    );
    try {
      await until(
        () => lines.find((l) => l.msg === 'Updated network policies from the Kubernetes API' && l.from_kubernetes === 1),
        'the first list of policies',
      );
      const watching = lines.find((l) => l.msg === 'Watching network policies in the Kubernetes API')!;
      expect(watching.server).toBe(kube.server);
      expect(watching.credentials).toBe(`kubeconfig ${kube.kubeconfig} (context verdict)`);
      // Relay sends a follower only flows after it joined.
      await until(() => (relay.followerCount === 1 ? true : undefined), 'the module to follow Relay');
      relay.push([drop(1)]);
      await until(() => {
        alerts.flush(true);
        return outbox.read(0, 10).length === 1 ? true : undefined;
      }, 'the alert for the drop');
      const first = outbox.read(0, 10).map((r) => JSON.parse(r.payload.toString()) as AlertPayload);
      expect(first.map((a) => a.policies.map((p) => `${p.kind}/${p.namespace}/${p.name}`))).toEqual([['CiliumNetworkPolicy/shop/payments-ingress']]);

      await must(kube, ['delete', 'cnp', 'payments-ingress', '-n', 'shop']);
      await until(() => lines.find((l) => l.msg === 'Updated network policies from the Kubernetes API' && l.from_kubernetes === 0), 'the deletion');
      relay.push([drop(2)]);
      // The drop is handled (the cursor moves past it) but nothing blames it now.
      await new Promise((r) => setTimeout(r, 500));
      alerts.flush(true);
      expect(outbox.read(0, 10)).toHaveLength(1);
    } finally {
      abort.abort();
      await run;
      await relay.close();
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('kubernetes_policies: auto outside a pod and without --kubeconfig or KUBECONFIG does not watch', async () => {
    const relay = new HubbleRelayPeer();
    const addr = await relay.listen('127.0.0.1:0');
    const block = parseAgentConfig(`cilium:\n  hubble_relay_address: ${addr}\n`, 'config.yaml').value.cilium!;
    const db = openAgentDb(':memory:');
    const quiet = pino({ level: 'silent' });
    const alerts = new AlertAggregator(db, new Spool(db, { maxBytes: 1e9, log: quiet }), { log: quiet });
    const lines: { msg: string }[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as (typeof lines)[number]) });
    const saved = { KUBECONFIG: process.env.KUBECONFIG, KUBERNETES_SERVICE_HOST: process.env.KUBERNETES_SERVICE_HOST };
    delete process.env.KUBECONFIG;
    delete process.env.KUBERNETES_SERVICE_HOST;
    const abort = new AbortController();
    const run = createCiliumModule({ policyPaths: [] }).run(block, { log, db, alerts, dataDir: tmpdir(), agentName: 'edge', files: [] }, abort.signal);
    try {
      await until(() => lines.find((l) => l.msg === 'Loaded network policies'), 'the module to start');
      await new Promise((r) => setTimeout(r, 300));
      expect(lines.map((l) => l.msg)).not.toContain('Watching network policies in the Kubernetes API');
    } finally {
      Object.assign(process.env, Object.fromEntries(Object.entries(saved).filter(([, v]) => v !== undefined)));
      abort.abort();
      await run;
      await relay.close();
      db.close();
    }
  }, 30_000);
});
