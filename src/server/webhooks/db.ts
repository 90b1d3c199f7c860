import { migrate, type DB } from '../../shared/sqlite/open.js';

// The webhook tables live in the server's database, in their own migration
// scope, so an alert and the deliveries it causes commit in one transaction.
// Migrations only ever append.
const MIGRATIONS = [
  `CREATE TABLE webhook_integrations (
     id INTEGER PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     origin TEXT NOT NULL CHECK (origin IN ('config', 'api')),
     spec TEXT NOT NULL,
     disabled_reason TEXT,
     disabled_at TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE webhook_deliveries (
     id INTEGER PRIMARY KEY,
     integration_id INTEGER NOT NULL REFERENCES webhook_integrations(id) ON DELETE CASCADE,
     webhook_id TEXT NOT NULL UNIQUE,
     event TEXT NOT NULL,
     alert_ids TEXT NOT NULL,
     items TEXT NOT NULL,
     body TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
     attempts INTEGER NOT NULL DEFAULT 0,
     next_attempt_at INTEGER NOT NULL,
     lease_until INTEGER,
     group_until INTEGER,
     last_status INTEGER,
     last_error TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     finished_at TEXT
   );
   CREATE INDEX webhook_deliveries_due ON webhook_deliveries (integration_id, next_attempt_at) WHERE state = 'pending';
   CREATE INDEX webhook_deliveries_list ON webhook_deliveries (integration_id, state, id);
   CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE state = 'delivered';
   CREATE TABLE webhook_attempts (
     id INTEGER PRIMARY KEY,
     delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
     at TEXT NOT NULL,
     status INTEGER,
     error TEXT,
     duration_ms INTEGER NOT NULL
   );
   CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
   -- Which events of an alert an integration was already given: an alert opens
   -- once per integration, resolves once, and crosses each count milestone once.
   CREATE TABLE webhook_alert_events (
     integration_id INTEGER NOT NULL REFERENCES webhook_integrations(id) ON DELETE CASCADE,
     alert_id INTEGER NOT NULL,
     event TEXT NOT NULL,
     PRIMARY KEY (integration_id, alert_id, event)
   ) WITHOUT ROWID;`,
  // Finding the open group of an integration, and counting dead letters for
  // /metrics, must not scan the backlog or the delivered history.
  `CREATE INDEX webhook_deliveries_open_groups ON webhook_deliveries (integration_id, event, group_until)
     WHERE state = 'pending' AND attempts = 0 AND group_until IS NOT NULL;
   CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (integration_id) WHERE state = 'dead';`,
  // What integrations were given of an alert goes with the alert when retention
  // purges it; before this the table only grew. Rows of alerts already purged go now.
  `CREATE INDEX webhook_alert_events_alert ON webhook_alert_events (alert_id);
   CREATE TRIGGER webhook_alert_events_purge AFTER DELETE ON alerts BEGIN
     DELETE FROM webhook_alert_events WHERE alert_id = old.id;
   END;
   DELETE FROM webhook_alert_events WHERE alert_id NOT IN (SELECT id FROM alerts);`,
];

export function migrateWebhooks(db: DB): void {
  migrate(db, 'webhooks', MIGRATIONS);
}
