import { randomUUID } from 'node:crypto';
import { resolveSecretRef, type IntegrationSpec } from '../../shared/config/webhooks-config.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { VerdictError } from '../../shared/errors.js';

// Integrations live in SQLite whichever way they were made: those from the
// config file are written there at start-up (and are read-only through the
// API), those made through the admin API persist there. Routing inside the
// alert-store transaction reads this in-memory copy, refreshed on every change.
// Replicas on Kafka share the API-made integrations and every integration's
// 410 disablement through the tokens topic (src/server/kafka/tokens.ts): a
// change made here is written there and applied, here too, when read back, so
// every replica ends at the change written last. Config-file integrations stay
// each replica's own config; only their disabled state is shared.

export type Origin = 'config' | 'api';

export interface Integration {
  id: number;
  name: string;
  origin: Origin;
  spec: IntegrationSpec;
  /** Set when the endpoint answered 410 Gone; deliveries wait until it is enabled again. */
  disabled_reason: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
}

interface Row extends Omit<Integration, 'spec'> {
  spec: string;
}

/**
 * An integration as replicas share it: one message per integration name (compaction keeps the newest), holding all
 * that is shared, so a replica that starts later learns it from that one message. `deleted` for an API-made one
 * deleted; a config-file one carries no spec, only its disabled state.
 */
export interface SharedIntegration {
  kind: 'integration';
  name: string;
  origin: Origin;
  spec: IntegrationSpec | null;
  deleted: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  created_at: string;
  updated_at: string;
  /** Tells the change made here, read back, from others. */
  change: string;
}

/** Where changes go when replicas share integrations (Kafka): `wait` resolves once this replica has applied it. */
export interface IntegrationShare {
  publish(row: SharedIntegration, wait: boolean): Promise<void>;
}

export interface ResolvedCredentials {
  /** The endpoint, read from env:/file: when the config keeps it there. */
  url: URL;
  secrets: string[];
  key: string | undefined;
}

export class IntegrationRegistry {
  private list: Integration[] = [];
  private readonly creds = new Map<number, { updated: string; value: ResolvedCredentials }>();
  private readonly listeners = new Set<() => void>();
  private share: IntegrationShare | undefined;

  constructor(private readonly db: DB) {
    this.reload();
  }

  private reload(): void {
    this.list = (this.db.prepare('SELECT * FROM webhook_integrations ORDER BY id').all() as Row[]).map((r) => ({
      ...r,
      spec: JSON.parse(r.spec) as IntegrationSpec,
    }));
    for (const l of this.listeners) l();
  }

  /** Called after any change, e.g. to let the worker drop connections of an edited endpoint. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Set by the Kafka replica: changes go through the shared topic from then on. */
  setShare(share: IntegrationShare | undefined): void {
    this.share = share;
  }

  get shared(): boolean {
    return this.share !== undefined;
  }

  all(): readonly Integration[] {
    return this.list;
  }

  /** Integrations that take new deliveries and are delivered to. */
  active(): Integration[] {
    return this.list.filter((i) => i.spec.enabled && !i.disabled_reason);
  }

  byName(name: string): Integration | undefined {
    return this.list.find((i) => i.name === name);
  }

  byId(id: number): Integration | undefined {
    return this.list.find((i) => i.id === id);
  }

  create(spec: IntegrationSpec, origin: Origin): Integration {
    if (this.byName(spec.name)) throw new VerdictError('VERDICT_CONFLICT', `an integration named "${spec.name}" exists; pick another name or PATCH that one`);
    const now = new Date().toISOString();
    this.db
      .prepare('INSERT INTO webhook_integrations (name, origin, spec, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
      .run(spec.name, origin, JSON.stringify(spec), now, now);
    this.reload();
    return this.byName(spec.name)!;
  }

  /** Creates an API-made integration, on every replica when they share integrations. */
  async createApi(spec: IntegrationSpec): Promise<Integration> {
    if (!this.share) return this.create(spec, 'api');
    if (this.byName(spec.name)) throw new VerdictError('VERDICT_CONFLICT', `an integration named "${spec.name}" exists; pick another name or PATCH that one`);
    const now = new Date().toISOString();
    await this.publish({ name: spec.name, origin: 'api', spec, disabled_reason: null, disabled_at: null, created_at: now, updated_at: now });
    const made = this.byName(spec.name);
    // Another replica created one of that name just before: the log's order made theirs the one.
    if (!made || JSON.stringify(made.spec) !== JSON.stringify(spec))
      throw new VerdictError('VERDICT_CONFLICT', `an integration named "${spec.name}" was just changed on another replica; GET it and try again`);
    return made;
  }

  async updateApi(name: string, spec: IntegrationSpec): Promise<Integration> {
    if (!this.share) return this.update(name, spec);
    const cur = this.checkUpdate(name, spec);
    const urlChanged = spec.url !== cur.spec.url;
    await this.publish({
      ...this.sharedOf(cur),
      spec,
      updated_at: new Date().toISOString(),
      ...(urlChanged ? { disabled_reason: null, disabled_at: null } : {}),
    });
    return this.byName(name) ?? cur;
  }

  async deleteApi(name: string): Promise<number> {
    if (!this.share) return this.delete(name);
    const cur = this.mustGetWritable(name);
    const pending = this.pendingCount(cur.id);
    await this.publish({ ...this.sharedOf(cur), spec: null, deleted: true, updated_at: new Date().toISOString() });
    return pending;
  }

  async enableApi(name: string): Promise<Integration> {
    const cur = this.byName(name);
    if (!cur) throw new VerdictError('VERDICT_NOT_FOUND', `no integration named "${name}"; GET /api/v1/admin/integrations lists them`);
    if (!this.share) return this.enable(name);
    await this.publish({ ...this.sharedOf(cur), disabled_reason: null, disabled_at: null });
    return this.byName(name) ?? cur;
  }

  private sharedOf(i: Integration): Omit<SharedIntegration, 'kind' | 'change' | 'deleted'> & { deleted: boolean } {
    return {
      name: i.name,
      origin: i.origin,
      spec: i.origin === 'api' ? i.spec : null,
      deleted: false,
      disabled_reason: i.disabled_reason,
      disabled_at: i.disabled_at,
      created_at: i.created_at,
      updated_at: i.updated_at,
    };
  }

  /** Writes a change for every replica and waits until it is applied here. */
  private async publish(r: Omit<SharedIntegration, 'kind' | 'change' | 'deleted'> & { deleted?: boolean }): Promise<void> {
    await this.share!.publish({ kind: 'integration', deleted: false, ...r, change: randomUUID() }, true);
  }

  private checkUpdate(name: string, spec: IntegrationSpec): Integration {
    const cur = this.mustGetWritable(name);
    if (spec.name !== name)
      throw new VerdictError('VERDICT_CONFLICT', `an integration cannot be renamed ("${name}" -> "${spec.name}"); create a new one and delete this one`);
    return cur;
  }

  /** Replaces the spec of an API-made integration; the name stays. */
  update(name: string, spec: IntegrationSpec): Integration {
    const cur = this.checkUpdate(name, spec);
    const urlChanged = spec.url !== cur.spec.url;
    this.db
      .prepare(`UPDATE webhook_integrations SET spec = ?, updated_at = ?${urlChanged ? ', disabled_reason = NULL, disabled_at = NULL' : ''} WHERE id = ?`)
      .run(JSON.stringify(spec), new Date().toISOString(), cur.id);
    this.reload();
    return this.byId(cur.id)!;
  }

  /** Deletes an API-made integration with its deliveries; returns how many were still pending. */
  delete(name: string): number {
    const cur = this.mustGetWritable(name);
    const pending = this.pendingCount(cur.id);
    this.db.prepare('DELETE FROM webhook_integrations WHERE id = ?').run(cur.id);
    this.reload();
    return pending;
  }

  /**
   * Disables an integration whose endpoint answered 410, here at once and, when replicas share integrations, on every
   * replica. False if it was disabled already: tries in flight together may each get the 410, and the first says when.
   */
  disable(id: number, reason: string): boolean {
    const cur = this.byId(id);
    if (!cur || cur.disabled_reason) return false;
    const at = new Date().toISOString();
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = ?, disabled_at = ? WHERE id = ? AND disabled_reason IS NULL').run(reason, at, id);
    this.reload();
    // Not waited for: the publisher keeps it until Kafka takes it.
    if (this.share) void this.share.publish({ kind: 'integration', ...this.sharedOf(this.byId(id)!), change: randomUUID() }, false);
    return true;
  }

  /**
   * Applies a change read from the shared topic, whichever replica made it. An API-made integration is created,
   * replaced or deleted; any integration takes the disabled state. A name the config file owns here keeps this file's
   * spec (server.yaml must define the same integrations on every replica).
   */
  applyShared(r: SharedIntegration, log: Logger): void {
    if (typeof r.name !== 'string' || (r.origin !== 'api' && r.origin !== 'config') || typeof r.created_at !== 'string' || typeof r.updated_at !== 'string')
      return;
    if (r.spec !== null && (typeof r.spec !== 'object' || r.spec.name !== r.name)) return;
    const cur = this.byName(r.name);
    const disabledReason = typeof r.disabled_reason === 'string' ? r.disabled_reason : null;
    const disabledAt = typeof r.disabled_at === 'string' ? r.disabled_at : null;
    if (r.deleted) {
      if (cur?.origin !== 'api') return;
      const pending = this.pendingCount(cur.id);
      this.db.prepare('DELETE FROM webhook_integrations WHERE id = ?').run(cur.id);
      this.reload();
      log.info({ integration: r.name, pending_deliveries_dropped: pending }, 'Webhooks: deleted an integration, as another replica did');
      return;
    }
    if (r.origin === 'api' && r.spec && cur?.origin !== 'config') {
      const spec = JSON.stringify(r.spec);
      if (!cur) {
        this.db
          .prepare(
            "INSERT INTO webhook_integrations (name, origin, spec, disabled_reason, disabled_at, created_at, updated_at) VALUES (?, 'api', ?, ?, ?, ?, ?)",
          )
          .run(r.name, spec, disabledReason, disabledAt, r.created_at, r.updated_at);
      } else {
        this.db
          .prepare('UPDATE webhook_integrations SET spec = ?, disabled_reason = ?, disabled_at = ?, created_at = ?, updated_at = ? WHERE id = ?')
          .run(spec, disabledReason, disabledAt, r.created_at, r.updated_at, cur.id);
      }
    } else if (cur) {
      if (r.origin === 'api' && cur.origin === 'config')
        log.warn(
          { integration: r.name },
          "Webhooks: another replica changed an API-made integration that this replica's config file defines; define the same integrations in server.yaml on every replica",
        );
      if (cur.disabled_reason === disabledReason && cur.disabled_at === disabledAt) return;
      this.db.prepare('UPDATE webhook_integrations SET disabled_reason = ?, disabled_at = ? WHERE id = ?').run(disabledReason, disabledAt, cur.id);
    } else {
      return;
    }
    this.reload();
  }

  /** Clears a 410 disablement (allowed for config integrations too: it is state, not configuration). */
  enable(name: string): Integration {
    const cur = this.byName(name);
    if (!cur) throw new VerdictError('VERDICT_NOT_FOUND', `no integration named "${name}"; GET /api/v1/admin/integrations lists them`);
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = NULL, disabled_at = NULL WHERE id = ?').run(cur.id);
    this.reload();
    return this.byId(cur.id)!;
  }

  private mustGetWritable(name: string): Integration {
    const cur = this.byName(name);
    if (!cur) throw new VerdictError('VERDICT_NOT_FOUND', `no integration named "${name}"; GET /api/v1/admin/integrations lists them`);
    if (cur.origin === 'config')
      throw new VerdictError('VERDICT_CONFLICT', `integration "${name}" is defined in the server config file; change it there and restart the server`);
    return cur;
  }

  private pendingCount(id: number): number {
    return (this.db.prepare("SELECT count(*) AS n FROM webhook_deliveries WHERE integration_id = ? AND state = 'pending'").get(id) as { n: number }).n;
  }

  /**
   * Makes the config file's integrations the config-origin rows: new ones are
   * added, changed ones updated, removed ones deleted (their pending deliveries
   * with them, which is logged), and an API-made one with a config name is
   * taken over by the file.
   */
  reconcile(specs: readonly IntegrationSpec[], log: Logger): void {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      const names = new Set(specs.map((s) => s.name));
      for (const spec of specs) {
        const cur = this.byName(spec.name);
        if (!cur) {
          this.db
            .prepare("INSERT INTO webhook_integrations (name, origin, spec, created_at, updated_at) VALUES (?, 'config', ?, ?, ?)")
            .run(spec.name, JSON.stringify(spec), now, now);
          continue;
        }
        if (cur.origin === 'api')
          log.warn(
            { integration: spec.name },
            'Webhooks: the config file defines an integration that was made through the admin API; the config file now owns it',
          );
        if (cur.origin === 'api' || JSON.stringify(cur.spec) !== JSON.stringify(spec)) {
          const reset = cur.spec.url !== spec.url;
          this.db
            .prepare(
              `UPDATE webhook_integrations SET origin = 'config', spec = ?, updated_at = ?${reset ? ', disabled_reason = NULL, disabled_at = NULL' : ''} WHERE id = ?`,
            )
            .run(JSON.stringify(spec), now, cur.id);
        }
      }
      for (const cur of this.list) {
        if (cur.origin !== 'config' || names.has(cur.name)) continue;
        const pending = this.pendingCount(cur.id);
        this.db.prepare('DELETE FROM webhook_integrations WHERE id = ?').run(cur.id);
        log.warn(
          { integration: cur.name, pending_deliveries_dropped: pending },
          'Webhooks: removed an integration that is no longer in the config file, with its deliveries',
        );
      }
    })();
    this.reload();
  }

  /** URL, secrets and key, read from env:/file: references once per version of the integration. */
  credentials(i: Integration): ResolvedCredentials {
    const c = this.creds.get(i.id);
    if (c && c.updated === i.updated_at) return c.value;
    // Only the config file may read the server's environment and files: an admin
    // could otherwise read the host through an integration's URL or key. A stored
    // API-made integration holding a reference is therefore never resolved.
    const resolve = (ref: string) => {
      if (i.origin === 'api' && (ref.startsWith('env:') || ref.startsWith('file:')))
        throw new Error(
          `it was made through the admin API, which may not use env: or file: references; PATCH /api/v1/admin/integrations/${i.name} with the value itself, or move the integration into the server config file`,
        );
      return resolveSecretRef(ref);
    };
    const value = {
      url: new URL(resolve(i.spec.url)),
      secrets: i.spec.secrets.map(resolve),
      key: i.spec.key === undefined ? undefined : resolve(i.spec.key),
    };
    this.creds.set(i.id, { updated: i.updated_at, value });
    return value;
  }
}
