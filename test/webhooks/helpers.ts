import { pino } from 'pino';
import { ALERT_SCHEMA, type AlertPayload } from '../../src/shared/alert/payload.js';
import { parseWebhooksJson } from '../../src/shared/config/webhooks-config.js';
import { AlertStore, type StoredAlert } from '../../src/server/store/alert-store.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { startWebhooks, type WebhooksService } from '../../src/server/webhooks/service.js';
import type { DB } from '../../src/shared/sqlite/open.js';

export const silent = pino({ level: process.env.VERDICT_TEST_LOGS ? 'debug' : 'silent' });

let n = 0;

export function cilium(o: Partial<AlertPayload> = {}): AlertPayload {
  n++;
  const t = new Date().toISOString();
  return {
    schema: ALERT_SCHEMA,
    source: 'cilium',
    fingerprint: `fp-cilium-${n}`,
    severity: 'high',
    title: 'Ingress denied: shop/frontend -> shop/payments:8443/TCP',
    description: 'Dropped by shop/payments-ingress (POLICY_DENIED).',
    cluster: 'prod',
    namespace: 'shop',
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [{ kind: 'CiliumNetworkPolicy', namespace: 'shop', name: 'payments-ingress' }],
    rule: '',
    labels: { direction: 'ingress', 'app.kubernetes.io/name': 'payments' },
    cilium: {
      direction: 'ingress',
      reason: 'POLICY_DENIED',
      drop_reason: 133,
      protocol: 'TCP',
      node: 'kind-worker',
      source: {
        namespace: 'shop',
        pod: 'frontend-7d9f8-1',
        ip: '10.0.0.7',
        port: 40123,
        identity: 1001,
        labels: ['k8s:app=frontend'],
        workload: 'Deployment/frontend',
        names: [],
      },
      destination: {
        namespace: 'shop',
        pod: 'payments-5c6b-0',
        ip: '10.0.1.13',
        port: 8443,
        identity: 1002,
        labels: ['k8s:app=payments'],
        workload: 'Deployment/payments',
        names: [],
      },
    },
    samples: [],
    ...o,
  };
}

export function falco(o: Partial<AlertPayload> = {}): AlertPayload {
  n++;
  const t = new Date().toISOString();
  return {
    schema: ALERT_SCHEMA,
    source: 'falco',
    fingerprint: `fp-falco-${n}`,
    severity: 'critical',
    title: 'Terminal shell in container (shop/web-1)',
    description: 'A shell was spawned in a container with an attached terminal.',
    cluster: 'prod',
    namespace: 'shop',
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [],
    rule: 'Terminal shell in container',
    labels: { pod: 'web-1', container: 'web' },
    falco: {
      rule: 'Terminal shell in container',
      priority: 'Critical',
      source: 'syscall',
      hostname: 'node-1',
      output: 'shell',
      tags: ['shell'],
      output_fields: {},
    },
    samples: [],
    ...o,
  };
}

export interface Harness {
  db: DB;
  store: AlertStore;
  svc: WebhooksService;
  /** Stores one event as agent `agent`; returns the stored alert. */
  ingest(p: AlertPayload, agent?: string): StoredAlert;
  close(): Promise<void>;
}

let ev = 0;

/** An alert store with webhook delivery, configured like the `webhooks:` block (as JSON). */
export function harness(webhooks: unknown, dataDir = ':memory:'): Harness {
  const db = openServerDb(dataDir);
  const store = new AlertStore(db);
  const svc = startWebhooks({ db, store, config: parseWebhooksJson(webhooks), log: silent, worker: { jitter: false, pollMs: 200 } });
  return {
    db,
    store,
    svc,
    ingest(p, agent = 'edge') {
      const r = store.ingest(agent, [{ id: `ev-${process.pid}-${++ev}`, payload: p }]);
      return r.alerts[0]!;
    },
    async close() {
      await svc.close();
      db.close();
    },
  };
}

export const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
export const SECRET2 = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;

/** Retries on a millisecond scale, for tests. */
export const FAST = { timeout: '2s', retry_schedule: ['50ms', '50ms', '50ms'] };
