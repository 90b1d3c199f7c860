import { createHash, randomUUID } from 'node:crypto';
import { resolveSecretRef, type IntegrationSpec } from '../../shared/config/webhooks-config.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { VerdictError } from '../../shared/errors.js';

// Integrations live in SQLite whichever way they were made: those from the
// config file are written there at start-up (and are read-only through the
// API), those made through the admin API persist there. Routing inside the
// alert-store transaction reads this in-memory copy, refreshed on every change.
// Replicas on Kafka share the API-made integrations and every integration's
// 410 disablement through the tokens topic (src/server/kafka/tokens.ts), in
// two messages per name: the spec (API changes only) and the disabled state
// (410s and enables), which holds only for the endpoint it was decided on. A
// change made here is written there and applied, here too, when read back, so
// every replica ends at the same state. Config-file integrations stay each
// replica's own config; only their disabled state is shared.

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
 * An API-made integration as replicas share it (key integration:<name>, compaction keeps the newest): its spec, or
 * that it was deleted; written only by admin API changes, so a 410 elsewhere never overwrites a spec. `created_at`
 * tells one life of the name from the next, so a change made to an integration deleted and made again is not applied.
 */
export interface SharedIntegration {
  kind: 'integration';
  name: string;
  origin: 'api';
  /** A create is not applied over a live integration of that name (two replicas creating one: the first wins). */
  op: 'create' | 'update' | 'delete';
  spec: IntegrationSpec | null;
  deleted: boolean;
  created_at: string;
  updated_at: string;
  /** Tells the change made here, read back, from others. */
  change: string;
  /**
   * Written again by the replica whose own change was not applied, so that the key's last message (all compaction
   * keeps) is what every replica has: an update marked so only creates the row where there is none (a replica that
   * reads the topic after compaction), it never overwrites a spec changed meanwhile.
   */
  repair?: boolean;
}

/**
 * An integration's 410 disablement or its enable (key integration_state:<name>), for API-made and config-file
 * integrations alike. It holds for the endpoint it was decided on (`spec_change`, see specChange): a reader whose
 * integration has another endpoint now, or none, ignores it, so it never brings back, creates or re-points one.
 */
export interface SharedIntegrationState {
  kind: 'integration_state';
  name: string;
  spec_change: string;
  disabled_reason: string | null;
  disabled_at: string | null;
  change: string;
  /** Written again as for SharedIntegration: applied only by a replica that has read no state of that name yet. */
  repair?: boolean;
}

/** Where changes go when replicas share integrations (Kafka): with `wait`, resolves once read back, true if applied. */
export interface IntegrationShare {
  publish(row: SharedIntegration | SharedIntegrationState, wait: boolean): Promise<boolean>;
}

/**
 * Which endpoint a disabled state is about, the same on every replica: an API-made integration's URL in this life of
 * its name, or a config-file one's URL (so a URL changed in server.yaml drops the old endpoint's 410).
 */
export function specChange(i: Pick<Integration, 'name' | 'origin' | 'spec' | 'created_at'>): string {
  return createHash('sha256')
    .update(JSON.stringify([i.origin, i.name, i.spec.url, i.origin === 'api' ? i.created_at : '']))
    .digest('hex')
    .slice(0, 32);
}

/** The integration a try was made with and when it started: a 410 answered to it disables only that. */
export interface TriedWith {
  integration: Integration;
  at: number;
}

export interface ResolvedCredentials {
  /** The endpoint, read from env:/file: when the config keeps it there. */
  url: URL;
  secrets: string[];
  key: string | undefined;
}

const lifeOf = (r: Pick<SharedIntegration, 'name' | 'created_at'>): string => JSON.stringify([r.name, r.created_at]);

export class IntegrationRegistry {
  private list: Integration[] = [];
  private readonly creds = new Map<number, { updated: string; value: ResolvedCredentials }>();
  private readonly listeners = new Set<() => void>();
  private share: IntegrationShare | undefined;
  /** When each integration was last enabled here: a 410 to a try started before is not the endpoint's answer now. */
  private readonly enabledAt = new Map<string, number>();
  /** Lives of names (name, created_at) deleted as read from the shared topic: a late update must not bring one back. */
  private readonly deletedLives = new Set<string>();
  /** Names whose disabled state was applied from the shared topic since start (see SharedIntegrationState.repair). */
  private readonly stateRead = new Set<string>();

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
    // Not applied: another replica created one of that name first (in the log's order).
    if (!(await this.publish(spec.name, { op: 'create', spec, deleted: false, created_at: now, updated_at: now })))
      throw new VerdictError(
        'VERDICT_CONFLICT',
        `an integration named "${spec.name}" was just created on another replica; GET it, then PATCH it or pick another name`,
      );
    return this.byName(spec.name)!;
  }

  async updateApi(name: string, spec: IntegrationSpec): Promise<Integration> {
    if (!this.share) return this.update(name, spec);
    const cur = this.checkUpdate(name, spec);
    if (!(await this.publish(name, { op: 'update', spec, deleted: false, created_at: cur.created_at, updated_at: new Date().toISOString() })))
      throw new VerdictError('VERDICT_NOT_FOUND', `integration "${name}" was just deleted on another replica; POST it again to make it anew`);
    return this.byName(name) ?? cur;
  }

  async deleteApi(name: string): Promise<number> {
    if (!this.share) return this.delete(name);
    const cur = this.mustGetWritable(name);
    const pending = this.pendingCount(cur.id);
    await this.publish(name, { op: 'delete', spec: null, deleted: true, created_at: cur.created_at, updated_at: new Date().toISOString() });
    return pending;
  }

  async enableApi(name: string): Promise<Integration> {
    const cur = this.byName(name);
    if (!cur) throw new VerdictError('VERDICT_NOT_FOUND', `no integration named "${name}"; GET /api/v1/admin/integrations lists them`);
    if (!this.share) return this.enable(name);
    const state: SharedIntegrationState = {
      kind: 'integration_state',
      name,
      spec_change: specChange(cur),
      disabled_reason: null,
      disabled_at: null,
      change: randomUUID(),
    };
    if (!(await this.share.publish(state, true)))
      throw new VerdictError('VERDICT_CONFLICT', `integration "${name}" was just changed or deleted on another replica; GET it and try again`);
    return this.byName(name) ?? cur;
  }

  /** Writes an API change for every replica and waits until it is read back here; true if it was applied. */
  private publish(name: string, r: Omit<SharedIntegration, 'kind' | 'change' | 'name' | 'origin'>): Promise<boolean> {
    return this.share!.publish({ kind: 'integration', origin: 'api', name, ...r, change: randomUUID() }, true);
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
   * replica. False if it was disabled already (tries in flight together may each get the 410, and the first says
   * when), or if the try was made with another endpoint or before the integration was last enabled: that 410 is not
   * the endpoint's answer now.
   */
  disable(id: number, reason: string, tried?: TriedWith): boolean {
    const cur = this.byId(id);
    if (!cur || cur.disabled_reason) return false;
    if (tried && (specChange(tried.integration) !== specChange(cur) || tried.at <= (this.enabledAt.get(cur.name) ?? -1))) return false;
    const at = new Date().toISOString();
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = ?, disabled_at = ? WHERE id = ? AND disabled_reason IS NULL').run(reason, at, id);
    this.reload();
    // Not waited for: the publisher keeps it until Kafka takes it.
    if (this.share)
      void this.share.publish(
        { kind: 'integration_state', name: cur.name, spec_change: specChange(cur), disabled_reason: reason, disabled_at: at, change: randomUUID() },
        false,
      );
    return true;
  }

  /**
   * Applies an API change read from the shared topic, whichever replica made it; true if applied. A create does not
   * replace a live integration, an update or delete applies only to the life of the name it was made on, and a name
   * the config file owns here keeps this file's spec (server.yaml must define the same integrations on every replica).
   */
  applyShared(r: SharedIntegration, log: Logger): boolean {
    if (typeof r.name !== 'string' || typeof r.created_at !== 'string' || typeof r.updated_at !== 'string') return false;
    const op = r.deleted ? 'delete' : r.op;
    if (op !== 'delete' && ((op !== 'create' && op !== 'update') || !r.spec || typeof r.spec !== 'object' || r.spec.name !== r.name)) return false;
    const cur = this.byName(r.name);
    if (cur?.origin === 'config') {
      log.warn(
        { integration: r.name },
        "Webhooks: another replica changed an API-made integration that this replica's config file defines; define the same integrations in server.yaml on every replica",
      );
      return false;
    }
    if (op === 'create') {
      if (cur) return false;
      this.db
        .prepare("INSERT INTO webhook_integrations (name, origin, spec, created_at, updated_at) VALUES (?, 'api', ?, ?, ?)")
        .run(r.name, JSON.stringify(r.spec), r.created_at, r.updated_at);
    } else if (!cur) {
      // The update is all compaction left of this life (the create before it is gone): it makes the row, as the create
      // did on the replicas that read it. Not for a life read deleted here: that update came too late.
      if (op === 'delete') this.deletedLives.add(lifeOf(r));
      if (op === 'delete' || this.deletedLives.has(lifeOf(r))) return false;
      this.db
        .prepare("INSERT INTO webhook_integrations (name, origin, spec, created_at, updated_at) VALUES (?, 'api', ?, ?, ?)")
        .run(r.name, JSON.stringify(r.spec), r.created_at, r.updated_at);
    } else {
      if (cur.created_at !== r.created_at || (r.repair && op !== 'delete')) return false;
      if (op === 'delete') {
        this.deletedLives.add(lifeOf(r));
        const pending = this.pendingCount(cur.id);
        this.db.prepare('DELETE FROM webhook_integrations WHERE id = ?').run(cur.id);
        log.info({ integration: r.name, pending_deliveries_dropped: pending }, 'Webhooks: deleted an integration, as another replica did');
      } else {
        // Another endpoint: its disabled state was the old one's (as on every replica, see specChange).
        const reset = r.spec!.url !== cur.spec.url;
        this.db
          .prepare(`UPDATE webhook_integrations SET spec = ?, updated_at = ?${reset ? ', disabled_reason = NULL, disabled_at = NULL' : ''} WHERE id = ?`)
          .run(JSON.stringify(r.spec), r.updated_at, cur.id);
      }
    }
    this.reload();
    return true;
  }

  /** Applies a disabled state read from the shared topic if it is about this integration's endpoint now; true if so. */
  applyState(r: SharedIntegrationState): boolean {
    if (typeof r.name !== 'string' || typeof r.spec_change !== 'string') return false;
    const cur = this.byName(r.name);
    if (!cur || specChange(cur) !== r.spec_change || (r.repair && this.stateRead.has(r.name))) return false;
    this.stateRead.add(r.name);
    const reason = typeof r.disabled_reason === 'string' ? r.disabled_reason : null;
    const at = reason !== null && typeof r.disabled_at === 'string' ? r.disabled_at : null;
    if (reason === null) this.enabledAt.set(cur.name, Date.now());
    if (cur.disabled_reason === reason && cur.disabled_at === at) return true;
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = ?, disabled_at = ? WHERE id = ?').run(reason, at, cur.id);
    this.reload();
    return true;
  }

  /**
   * After this replica read back its own change: the message to write again when that change, were it the only one of
   * its key left (compaction), would not give what every replica has now, e.g. a create that lost to another replica's
   * (409), an update or delete of a life deleted or made anew meanwhile (404), an enable or a 410 about an old endpoint.
   */
  repairFor(r: SharedIntegration | SharedIntegrationState): SharedIntegration | SharedIntegrationState | undefined {
    const cur = this.byName(r.name);
    if (cur?.origin === 'config' && r.kind === 'integration') return undefined;
    if (r.kind === 'integration_state') {
      if (!cur) return undefined;
      const alone = r.spec_change === specChange(cur) ? (r.disabled_reason ?? null) : null;
      if (alone === cur.disabled_reason) return undefined;
      return {
        kind: 'integration_state',
        name: r.name,
        spec_change: specChange(cur),
        disabled_reason: cur.disabled_reason,
        disabled_at: cur.disabled_at,
        change: randomUUID(),
        repair: true,
      };
    }
    const makes = !r.deleted && r.op !== 'delete';
    if (makes ? cur && cur.created_at === r.created_at && JSON.stringify(cur.spec) === JSON.stringify(r.spec) : !cur) return undefined;
    const base = { kind: 'integration' as const, name: r.name, origin: 'api' as const, change: randomUUID(), repair: true };
    if (cur) return { ...base, op: 'update', spec: cur.spec, deleted: false, created_at: cur.created_at, updated_at: cur.updated_at };
    return { ...base, op: 'delete', spec: null, deleted: true, created_at: r.created_at, updated_at: new Date().toISOString() };
  }

  /** Clears a 410 disablement (allowed for config integrations too: it is state, not configuration). */
  enable(name: string): Integration {
    const cur = this.byName(name);
    if (!cur) throw new VerdictError('VERDICT_NOT_FOUND', `no integration named "${name}"; GET /api/v1/admin/integrations lists them`);
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = NULL, disabled_at = NULL WHERE id = ?').run(cur.id);
    this.enabledAt.set(cur.name, Date.now());
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
