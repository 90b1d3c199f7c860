import type { WebhooksConfig } from '../../shared/config/webhooks-config.js';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertStore, StoredAlert } from '../store/alert-store.js';
import { migrateWebhooks } from './db.js';
import { IntegrationRegistry } from './integrations.js';
import { addBacklogSource } from './metrics.js';
import { Outbox } from './outbox.js';
import { AddressPolicy } from '../../shared/net/ssrf.js';
import { DeliveryWorker, type WorkerOptions } from './worker.js';

// Wiring: the outbox hooks in the alert store's transactions (new alerts and
// status changes), the delivery worker, and what the admin API needs. One
// outbox per database; enqueueForStatusChange(db, alert) serves code that
// changes a status outside the store.

interface DbState {
  registry: IntegrationRegistry;
  outbox: Outbox;
  externalUrl: string;
}

const byDb = new WeakMap<DB, DbState>();

function stateFor(db: DB): DbState {
  let st = byDb.get(db);
  if (!st) {
    migrateWebhooks(db);
    const registry = new IntegrationRegistry(db);
    const holder = { externalUrl: '' };
    st = Object.assign(holder, { registry, outbox: new Outbox(db, registry, { externalUrl: () => holder.externalUrl }) });
    byDb.set(db, st);
  }
  return st;
}

/**
 * Records the deliveries a status change causes: `resolved` when it resolves
 * the alert and, as after any change, a `triggered` an integration was not
 * sent yet. Call it inside the transaction that updates the alert, with the alert as it is after
 * the change, so the change and its deliveries commit together. Safe to call
 * more than once: each alert resolves once per integration.
 */
export function enqueueForStatusChange(db: DB, alert: StoredAlert): number {
  return stateFor(db).outbox.enqueueForStatus(alert);
}

export interface WebhooksService {
  registry: IntegrationRegistry;
  outbox: Outbox;
  policy: AddressPolicy;
  worker: DeliveryWorker;
  close(): Promise<void>;
}

const byStore = new WeakMap<AlertStore, WebhooksService>();

/** The running service for a store (the admin routes find it this way). */
export function webhooksFor(store: AlertStore): WebhooksService | undefined {
  return byStore.get(store);
}

/** Delivered deliveries are kept this long for the API, then pruned. */
const DELIVERED_RETENTION_MS = 7 * 24 * 3_600_000;

export interface StartWebhooksOptions {
  db: DB;
  store: AlertStore;
  config?: WebhooksConfig | undefined;
  log: Logger;
  worker?: Partial<Pick<WorkerOptions, 'maxInFlight' | 'pollMs' | 'jitter' | 'random'>>;
  /**
   * False when replicas share an alert log in Kafka: every replica stores every
   * alert, so the Kafka delivery group records deliveries instead, once per
   * change across replicas (src/server/kafka/delivery.ts). Default true.
   */
  enqueueOnStore?: boolean;
}

export function startWebhooks(o: StartWebhooksOptions): WebhooksService {
  const st = stateFor(o.db);
  st.externalUrl = o.config?.external_url ?? '';
  st.registry.reconcile(o.config?.integrations ?? [], o.log);
  const policy = new AddressPolicy(o.config?.allow_private_addresses ?? []);

  for (const i of st.registry.all()) {
    try {
      const refused = policy.checkLiteral(st.registry.credentials(i).url);
      if (refused) o.log.error({ integration: i.name, error: refused }, 'Webhooks: this integration points at an address that is refused');
    } catch (e) {
      o.log.error({ integration: i.name, error: errText(e) }, 'Webhooks: cannot read a secret of this integration; its deliveries fail until it is fixed');
    }
  }

  if (o.enqueueOnStore !== false) {
    // Deliveries commit with the alerts they are for, resolutions with the status change.
    o.store.onChange((changes) => {
      const stored = changes.flatMap((c) => (c.type === 'stored' ? [c.alert] : []));
      if (stored.length) st.outbox.enqueueForAlerts(stored);
      for (const c of changes) if (c.type === 'status' && c.alert.status === 'resolved') st.outbox.enqueueForStatus(c.alert);
    });
  }

  st.outbox.releaseLeases();
  const worker = new DeliveryWorker({ queue: st.outbox, registry: st.registry, policy, log: o.log, ...o.worker });
  worker.start();

  const prune = setInterval(() => {
    try {
      st.outbox.prune(DELIVERED_RETENTION_MS);
    } catch (e) {
      o.log.warn({ error: errText(e) }, 'Webhooks: pruning old deliveries failed');
    }
  }, 3_600_000);
  prune.unref();

  const removeBacklog = addBacklogSource(() => {
    const counts = st.outbox.backlog();
    return st.registry.all().map((i) => ({ integration: i.name, pending: counts.get(i.id)?.pending ?? 0, dead: counts.get(i.id)?.dead ?? 0 }));
  });

  const names = st.registry.all().map((i) => i.name);
  if (names.length) o.log.info({ integrations: names }, 'Webhooks: delivering to integrations');

  const service: WebhooksService = {
    registry: st.registry,
    outbox: st.outbox,
    policy,
    worker,
    async close() {
      clearInterval(prune);
      removeBacklog();
      byStore.delete(o.store);
      await worker.close();
    },
  };
  byStore.set(o.store, service);
  return service;
}
