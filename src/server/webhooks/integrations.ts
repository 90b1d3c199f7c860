import { resolveSecretRef, type IntegrationSpec } from '../../shared/config/webhooks-config.js';
import type { Logger } from '../../shared/log/logger.js';
import type { DB } from '../../shared/sqlite/open.js';
import { VerdictError } from '../../shared/errors.js';

// Integrations live in SQLite whichever way they were made: those from the
// config file are written there at start-up (and are read-only through the
// API), those made through the admin API persist there. Routing inside the
// alert-store transaction reads this in-memory copy, refreshed on every change.

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

  /** Replaces the spec of an API-made integration; the name stays. */
  update(name: string, spec: IntegrationSpec): Integration {
    const cur = this.mustGetWritable(name);
    if (spec.name !== name)
      throw new VerdictError('VERDICT_CONFLICT', `an integration cannot be renamed ("${name}" -> "${spec.name}"); create a new one and delete this one`);
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

  disable(id: number, reason: string): void {
    this.db.prepare('UPDATE webhook_integrations SET disabled_reason = ?, disabled_at = ? WHERE id = ?').run(reason, new Date().toISOString(), id);
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
