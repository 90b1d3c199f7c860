import { createHash } from 'node:crypto';
import type { DB } from '../../shared/sqlite/open.js';
import type { StoredAlert } from '../store/alert-store.js';
import { Reads } from '../store/reads.js';
import { snapshot, type DeliveryEvent, type DeliveryItem } from './formats/alert.js';
import { MAX_GROUP_SIZE, RENDERERS } from './formats/index.js';
import type { Integration, IntegrationRegistry } from './integrations.js';
import { routeMatches } from './routing.js';
import { newWebhookId, stableWebhookId } from './signer.js';

// The durable outbox. Deliveries are recorded inside the transaction that
// stores (or resolves) the alert, so a crash can lose neither: whatever
// committed is delivered after a restart. The body is rendered once, here, and
// every try sends it unchanged under the same webhook-id.
//
// What is delivered (docs/webhooks.md, "Events"):
// - triggered: the first time an alert matches an integration, normally when it opens;
// - repeated: when its count crosses one of the integration's repeat_milestones;
// - resolved: when an alert the integration was told about is resolved.
// Other repeats only bump the count and send nothing.
//
// Alertmanager and GitLab receivers keep an alert's state by its labels or
// fingerprint: a `triggered` or `repeated` that reaches them after the alert's
// `resolved` opens it again, for good. So, for those types, a firing delivery
// of alerts that are resolved now and whose `resolved` is claimed (by this or
// another replica) is not sent; and a firing that went out anyway (it was in
// flight, or a replica back from a crash sent its backlog before it had read
// the resolution from the log) is followed by a `resolved`.

export type DeliveryState = 'pending' | 'delivered' | 'dead';

export interface Delivery {
  id: number;
  integration_id: number;
  webhook_id: string;
  event: DeliveryEvent;
  alert_ids: number[];
  body: string;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  group_until: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

interface Row extends Omit<Delivery, 'alert_ids'> {
  alert_ids: string;
  items: string;
}

/** Types whose receivers hold the alert's state: a late firing reopens it there. */
const STATEFUL_TYPES: ReadonlySet<string> = new Set(['alertmanager', 'gitlab']);

/** last_error of a firing delivery that was not sent (docs/webhooks.md, "Delivery"). */
export const SUPERSEDED =
  'not sent: the alert was resolved, and its resolved notification recorded, before this was sent; a firing now would reopen it at the receiver';

const DELIVERY_COLS =
  'id, integration_id, webhook_id, event, alert_ids, body, state, attempts, next_attempt_at, lease_until, group_until, last_status, last_error, created_at, updated_at, finished_at';

/** An alert of a group as kept while the group may grow: with the webhook-id its event would have on its own. */
interface GroupItem extends DeliveryItem {
  member?: string;
}

/**
 * A group's webhook-id: that of its only member, else one derived from all of
 * theirs (sorted). So one id always names one set of alerts: two replicas that
 * group the same events differently (one of them crashed between recording
 * and publishing its claims) send them under different ids, and a receiver
 * that de-duplicates on webhook-id drops only a set it already has.
 */
function groupWebhookId(members: readonly string[]): string {
  const ids = [...new Set(members)].sort();
  if (ids.length === 1) return ids[0]!;
  const h = createHash('sha256')
    .update(`verdict.webhook-group.v1\u0000${ids.join('\u0000')}`)
    .digest();
  return `msg_${h.subarray(0, 16).toString('base64url')}`;
}

const toDelivery = ({ items: _items, ...r }: Row): Delivery => ({ ...r, alert_ids: JSON.parse(r.alert_ids) as number[] });

export interface Attempt {
  at: string;
  status: number | null;
  error: string | null;
  duration_ms: number;
}

/**
 * An event of an alert that an integration was given (or is being given), as
 * server replicas on Kafka share it: the integration by name and the alert by
 * its replica-independent id, since both row ids differ between replicas.
 * `event` is `triggered`, `resolved` or `repeated:<milestone>`.
 */
export interface SharedClaim {
  integration: string;
  alert: string;
  event: string;
}

/** An alert to record deliveries for, with its replica-independent id when it has one. */
export interface KeyedAlert {
  alert: StoredAlert;
  /** agent/fingerprint/first event id; absent for alerts stored before the server used Kafka. */
  key?: string | undefined;
}

/** Collects what enqueueOne claims, when the caller shares its claims with other replicas. */
interface ClaimContext {
  key: string;
  claims: SharedClaim[];
}

export type Outcome = { kind: 'delivered'; attempt: Attempt } | { kind: 'retry'; attempt: Attempt; at: number } | { kind: 'dead'; attempt: Attempt };

/** Claimed (webhook_alert_events) when a late firing re-opened an alert at a stateful receiver after its resolved. */
const REARMED = 'resolved:rearmed';

export class Outbox {
  private readonly s;
  private readonly wakeListeners = new Set<() => void>();
  private wakeScheduled = false;
  private reads: Reads | undefined;
  /** Deliveries recorded before this start are a crashed or stopped process's backlog. */
  private readonly startedAt = new Date().toISOString();
  /**
   * `integration id:alert id` of firings from that backlog sent since this
   * start: another replica may have resolved the alert meanwhile, and this
   * replica learns it only when it reads the log that far.
   */
  private readonly backlogFired = new Set<string>();

  constructor(
    private readonly db: DB,
    private readonly registry: IntegrationRegistry,
    private readonly opts: { externalUrl: () => string },
  ) {
    this.s = {
      claimEvent: db.prepare('INSERT OR IGNORE INTO webhook_alert_events (integration_id, alert_id, event) VALUES (?, ?, ?)'),
      hasEvent: db.prepare('SELECT 1 FROM webhook_alert_events WHERE integration_id = ? AND alert_id = ? AND event = ?'),
      dropEvent: db.prepare('DELETE FROM webhook_alert_events WHERE integration_id = ? AND alert_id = ? AND event = ?'),
      openGroup: db.prepare(
        "SELECT * FROM webhook_deliveries WHERE integration_id = ? AND event = ? AND state = 'pending' AND attempts = 0 AND group_until > ? AND lease_until IS NULL ORDER BY group_until DESC LIMIT 1",
      ),
      // OR IGNORE: the grown group's id may be taken by the same set recorded before (a lost claim); the alert then goes on its own.
      updateGroup: db.prepare('UPDATE OR IGNORE webhook_deliveries SET webhook_id = ?, items = ?, alert_ids = ?, body = ?, updated_at = ? WHERE id = ?'),
      // Webhook-ids derived from the alert (Kafka replicas) can come back only for a
      // claim that was lost (an alert purged and its event stored again): keep the first.
      insert:
        db.prepare(`INSERT INTO webhook_deliveries (integration_id, webhook_id, event, alert_ids, items, body, state, next_attempt_at, group_until, created_at, updated_at)
        VALUES (@integration_id, @webhook_id, @event, @alert_ids, @items, @body, 'pending', @next_attempt_at, @group_until, @now, @now) ON CONFLICT (webhook_id) DO NOTHING`),
      integrationByName: db.prepare('SELECT id FROM webhook_integrations WHERE name = ?'),
      due: db.prepare(
        `SELECT ${DELIVERY_COLS}, '[]' AS items FROM webhook_deliveries WHERE integration_id = ? AND state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`,
      ),
      // A lease moves next_attempt_at to its end: leased rows drop out of `due`
      // without being scanned, and come back by themselves if the worker is lost.
      lease: db.prepare('UPDATE webhook_deliveries SET lease_until = ?, next_attempt_at = ? WHERE id = ?'),
      nextDue: db.prepare(
        "SELECT next_attempt_at AS t FROM webhook_deliveries WHERE integration_id = ? AND state = 'pending' ORDER BY next_attempt_at LIMIT 1",
      ),
      finish: db.prepare(`UPDATE webhook_deliveries SET state = @state, attempts = attempts + 1, next_attempt_at = @next, lease_until = NULL,
        last_status = @status, last_error = @error, updated_at = @now, finished_at = @finished WHERE id = @id`),
      attempt: db.prepare('INSERT INTO webhook_attempts (delivery_id, at, status, error, duration_ms) VALUES (?, ?, ?, ?, ?)'),
      get: db.prepare('SELECT * FROM webhook_deliveries WHERE id = ?'),
      attempts: db.prepare('SELECT at, status, error, duration_ms FROM webhook_attempts WHERE delivery_id = ? ORDER BY id'),
      redeliver: db.prepare(`UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, lease_until = NULL, group_until = NULL,
        updated_at = ?, finished_at = NULL WHERE id = ? AND state != 'pending'`),
      redeliverDead: db.prepare(`UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, lease_until = NULL, group_until = NULL,
        updated_at = ?, finished_at = NULL WHERE integration_id = ? AND state = 'dead'`),
      counts: db.prepare('SELECT integration_id, state, count(*) AS n FROM webhook_deliveries GROUP BY integration_id, state'),
      pendingCounts: db.prepare("SELECT integration_id, count(*) AS n FROM webhook_deliveries WHERE state = 'pending' GROUP BY integration_id"),
      deadCounts: db.prepare("SELECT integration_id, count(*) AS n FROM webhook_deliveries WHERE state = 'dead' GROUP BY integration_id"),
      prune: db.prepare("DELETE FROM webhook_deliveries WHERE state = 'delivered' AND finished_at < ?"),
      alertStatus: db.prepare('SELECT status FROM alerts WHERE id = ?'),
      supersede: db.prepare(`UPDATE webhook_deliveries SET state = 'delivered', lease_until = NULL, last_error = @error, updated_at = @now, finished_at = @now
        WHERE id = @id AND state = 'pending'`),
      // The newest deliveries only: a resolved waiting to go out follows the firing already. One in flight (leased) may
      // reach the receiver before the firing does, so it does not count (a second resolved is harmless).
      pendingResolved: db.prepare(
        "SELECT 1 FROM webhook_deliveries WHERE integration_id = ? AND event = 'resolved' AND state = 'pending' AND lease_until IS NULL AND EXISTS (SELECT 1 FROM json_each(alert_ids) WHERE value = ?) LIMIT 1",
      ),
    };
  }

  /** Called (outside the transaction) when deliveries may have become due. */
  onWake(fn: () => void): () => void {
    this.wakeListeners.add(fn);
    return () => this.wakeListeners.delete(fn);
  }

  private wakeSoon(): void {
    if (this.wakeScheduled) return;
    this.wakeScheduled = true;
    // setImmediate runs after the synchronous transaction has committed.
    setImmediate(() => {
      this.wakeScheduled = false;
      for (const l of this.wakeListeners) l();
    });
  }

  /** For AlertStore.onChange: alerts stored or changed by an agent batch. */
  enqueueForAlerts(alerts: readonly StoredAlert[], now = Date.now()): number {
    // Most servers have no integration: no work per batch for them.
    if (!this.registry.active().length) return 0;
    return this.enqueueShared(
      alerts.map((alert) => ({ alert })),
      now,
    ).deliveries;
  }

  /**
   * For server replicas sharing an alert log in Kafka (src/server/kafka/delivery.ts):
   * like enqueueForAlerts, but a delivery's webhook-id is derived from the
   * integration, the alert's replica-independent key and the event
   * (stableWebhookId), so every replica that records it records the same id;
   * and the claims made are returned, for the caller to publish so other
   * replicas take them over (applyClaims). Alerts without a key get a random
   * id and share no claim. Run it inside a transaction.
   */
  enqueueShared(alerts: readonly KeyedAlert[], now = Date.now()): { deliveries: number; claims: SharedClaim[] } {
    const integrations = this.registry.active();
    const claims: SharedClaim[] = [];
    let n = 0;
    for (const i of integrations) {
      for (const { alert, key } of alerts) n += this.enqueueOne(i, alert, now, key === undefined ? undefined : { key, claims });
    }
    if (n) this.wakeSoon();
    return { deliveries: n, claims };
  }

  /** True while some integration is active (the Kafka delivery describes alerts for webhooks only then). */
  active(): boolean {
    return this.registry.active().length > 0;
  }

  /**
   * Takes over claims another replica published: the events they name count as
   * given for this replica too, so it neither sends them again nor holds back a
   * `resolved` for an alert another replica sent `triggered` for. Claims of
   * integrations or alerts this database does not have are skipped.
   * `alertId` resolves the replica-independent key to this database's alert.
   */
  applyClaims(claims: readonly SharedClaim[], alertId: (key: string) => number | undefined): number {
    let n = 0;
    const ids = new Map<string, number | undefined>();
    for (const c of claims) {
      let iid = ids.get(c.integration);
      if (!ids.has(c.integration)) {
        iid = (this.s.integrationByName.get(c.integration) as { id: number } | undefined)?.id;
        ids.set(c.integration, iid);
      }
      if (iid === undefined) continue;
      const aid = alertId(c.alert);
      if (aid === undefined) continue;
      const taken = this.s.claimEvent.run(iid, aid, c.event).changes;
      n += taken;
      if (taken && c.event === 'resolved' && this.backlogFired.has(`${iid}:${aid}`)) this.followUp(iid, aid);
    }
    return n;
  }

  /** Must run in the transaction that changes the alert's status (see enqueueForStatusChange). */
  enqueueForStatus(alert: StoredAlert, now = Date.now()): number {
    return this.enqueueForAlerts([alert], now);
  }

  /** Claims an event of an alert for an integration; false if it was claimed before. */
  private takeEvent(i: Integration, a: StoredAlert, event: string, ctx: ClaimContext | undefined): boolean {
    if (this.s.claimEvent.run(i.id, a.id, event).changes === 0) return false;
    ctx?.claims.push({ integration: i.name, alert: ctx.key, event });
    return true;
  }

  private enqueueOne(i: Integration, a: StoredAlert, now: number, ctx?: ClaimContext): number {
    const idFor = (event: string) => (ctx ? stableWebhookId(i.name, ctx.key, event) : newWebhookId());
    if (a.status === 'resolved') {
      // Close only what this integration was told about, whatever its route says now.
      if (!this.s.hasEvent.get(i.id, a.id, 'triggered')) return 0;
      if (!this.takeEvent(i, a, 'resolved', ctx)) return 0;
      // Re-armed by a late firing (firingSent): the first resolved's stable id is taken.
      const rearmed = this.s.dropEvent.run(i.id, a.id, REARMED).changes > 0;
      this.add(i, 'resolved', a, now, rearmed ? newWebhookId() : idFor('resolved'));
      return 1;
    }
    if (a.status === 'ignored' || !routeMatches(i.spec.route, a)) return 0;
    const milestone = [...i.spec.repeat_milestones].reverse().find((m) => m <= a.count);
    if (this.takeEvent(i, a, 'triggered', ctx)) {
      // The opening delivery already carries the count; do not follow it with a milestone.
      if (milestone !== undefined) this.takeEvent(i, a, `repeated:${milestone}`, ctx);
      this.add(i, 'triggered', a, now, idFor('triggered'));
      return 1;
    }
    if (milestone !== undefined && this.takeEvent(i, a, `repeated:${milestone}`, ctx)) {
      this.add(i, 'repeated', a, now, idFor(`repeated:${milestone}`));
      return 1;
    }
    return 0;
  }

  private render(i: Integration, items: DeliveryItem[], createdAt: string, webhookId: string): string {
    const body = items.map(({ event, alert }) => ({ event, alert }));
    return RENDERERS[i.spec.type](body, {
      integration: i.name,
      externalUrl: this.opts.externalUrl(),
      createdAt,
      grouped: i.spec.group_window !== undefined,
      webhookId,
    });
  }

  private add(i: Integration, event: DeliveryEvent, a: StoredAlert, now: number, webhookId: string): void {
    const iso = new Date(now).toISOString();
    const item: GroupItem = { ...snapshot(a, event, iso, this.opts.externalUrl()), member: webhookId };
    const window = i.spec.group_window;
    if (window !== undefined) {
      const open = this.s.openGroup.get(i.id, event, now) as Row | undefined;
      if (open) {
        const items = (JSON.parse(open.items) as GroupItem[]).filter((x) => x.alert.id !== a.id);
        if (items.length < MAX_GROUP_SIZE) {
          items.push(item);
          // Groups recorded before members were kept: their first alert's id stands for the members it had.
          const id = groupWebhookId(items.map((x) => x.member ?? open.webhook_id));
          const body = this.render(i, items, open.created_at, id);
          if (this.s.updateGroup.run(id, JSON.stringify(items), JSON.stringify(items.map((x) => x.alert.id)), body, iso, open.id).changes) return;
        }
      }
    }
    this.s.insert.run({
      // Items are kept only where a group may grow and be rendered again.
      integration_id: i.id,
      webhook_id: webhookId,
      event,
      alert_ids: JSON.stringify([a.id]),
      items: window === undefined ? '[]' : JSON.stringify([item]),
      body: this.render(i, [item], iso, webhookId),
      next_attempt_at: now + (window ?? 0),
      group_until: window === undefined ? null : now + window,
      now: iso,
    });
  }

  /**
   * Takes up to `limit` due deliveries of one integration and leases them for
   * `leaseMs`, so a lost worker's deliveries become due again by themselves.
   */
  claim(integrationId: number, limit: number, now: number, leaseMs: number): Delivery[] {
    if (limit <= 0) return [];
    return this.db.transaction(() => {
      const rows = (this.s.due.all(integrationId, now, limit) as Row[]).filter((r) => !this.superseded(toDelivery(r), now));
      for (const r of rows) this.s.lease.run(now + leaseMs, now + leaseMs, r.id);
      return rows.map((r) => ({ ...toDelivery(r), lease_until: now + leaseMs }));
    })();
  }

  /** Single-process start-up: nobody else can hold a lease, so none is waited out. */
  releaseLeases(now = Date.now()): void {
    // A leased delivery was due when it was taken, so it is due again now.
    this.db
      .prepare(
        "UPDATE webhook_deliveries SET lease_until = NULL, next_attempt_at = min(next_attempt_at, ?) WHERE state = 'pending' AND lease_until IS NOT NULL",
      )
      .run(now);
  }

  /** The earliest time any delivery of these integrations becomes due (ms), if any. */
  nextDueAt(integrationIds: readonly number[]): number | undefined {
    let min: number | undefined;
    // One index probe per integration; a backlog of retries is never scanned.
    for (const id of integrationIds) {
      const r = this.s.nextDue.get(id) as { t: number } | undefined;
      if (r && (min === undefined || r.t < min)) min = r.t;
    }
    return min;
  }

  /**
   * Records tries, many in one transaction (the worker batches the tries that
   * end together). For each: false when the delivery is gone (its integration
   * was deleted meanwhile).
   */
  finish(tries: readonly { d: Delivery; outcome: Outcome }[]): boolean[] {
    const now = new Date().toISOString();
    return this.db.transaction(() =>
      tries.map(({ d, outcome }) => {
        const changed = this.s.finish.run({
          id: d.id,
          state: outcome.kind === 'retry' ? 'pending' : outcome.kind,
          next: outcome.kind === 'retry' ? outcome.at : d.next_attempt_at,
          status: outcome.attempt.status,
          error: outcome.attempt.error,
          now,
          finished: outcome.kind === 'retry' ? null : now,
        }).changes;
        if (changed) this.s.attempt.run(d.id, outcome.attempt.at, outcome.attempt.status, outcome.attempt.error, outcome.attempt.duration_ms);
        if (changed && outcome.kind === 'delivered') this.firingSent(d);
        return changed > 0;
      }),
    )();
  }

  /** True for a firing delivery to a stateful receiver whose alerts are all resolved, with their `resolved` claimed: finished unsent. */
  private superseded(d: Delivery, now: number): boolean {
    if (d.event === 'resolved' || !this.stateful(d.integration_id)) return false;
    if (!d.alert_ids.every((aid) => this.closed(d.integration_id, aid))) return false;
    const iso = new Date(now).toISOString();
    return this.s.supersede.run({ id: d.id, error: SUPERSEDED, now: iso }).changes > 0;
  }

  private stateful(integrationId: number): boolean {
    const type = this.registry.byId(integrationId)?.spec.type;
    return type !== undefined && STATEFUL_TYPES.has(type);
  }

  /** The alert is resolved here and the integration's `resolved` for it is claimed (recorded here or by another replica). */
  private closed(integrationId: number, alertId: number): boolean {
    const a = this.s.alertStatus.get(alertId) as { status: string } | undefined;
    return a?.status === 'resolved' && Boolean(this.s.hasEvent.get(integrationId, alertId, 'resolved'));
  }

  /** A firing reached a stateful receiver: if the alert is closed by now, or may be closed by another replica, it must not stay open there. */
  private firingSent(d: Delivery): void {
    if (d.event === 'resolved' || !this.stateful(d.integration_id)) return;
    for (const aid of d.alert_ids) {
      if (this.closed(d.integration_id, aid)) {
        this.followUp(d.integration_id, aid);
        continue;
      }
      // Resolved and opened again (same id) before this late firing went: the receiver has the alert open again, so
      // the next resolve must send a resolved, though this alert's resolved was claimed already.
      if (this.s.hasEvent.get(d.integration_id, aid, 'resolved')) {
        this.s.dropEvent.run(d.integration_id, aid, 'resolved');
        this.s.claimEvent.run(d.integration_id, aid, REARMED);
      }
      if (d.created_at < this.startedAt) this.backlogFired.add(`${d.integration_id}:${aid}`);
    }
  }

  /** Records a `resolved` after a firing that went out late, unless one is waiting to go out already. */
  private followUp(integrationId: number, alertId: number): void {
    const i = this.registry.byId(integrationId);
    if (!i) return;
    if (this.s.pendingResolved.get(integrationId, alertId)) {
      this.backlogFired.delete(`${integrationId}:${alertId}`);
      return;
    }
    this.reads ??= new Reads(this.db);
    const a = this.reads.get(alertId);
    if (a?.status !== 'resolved') return;
    this.backlogFired.delete(`${integrationId}:${alertId}`);
    // A webhook-id of its own: the other replica's `resolved` may have gone before this replica's firing.
    this.add(i, 'resolved', a, Date.now(), newWebhookId());
    this.wakeSoon();
  }

  get(id: number): Delivery | undefined {
    const r = this.s.get.get(id) as Row | undefined;
    return r && toDelivery(r);
  }

  attempts(id: number): Attempt[] {
    return this.s.attempts.all(id) as Attempt[];
  }

  list(opts: { integrationId: number; state?: DeliveryState; limit: number; beforeId?: number }): Delivery[] {
    const where = ['integration_id = ?'];
    const args: (string | number)[] = [opts.integrationId];
    if (opts.state) {
      where.push('state = ?');
      args.push(opts.state);
    }
    if (opts.beforeId) {
      where.push('id < ?');
      args.push(opts.beforeId);
    }
    return (this.db.prepare(`SELECT * FROM webhook_deliveries WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`).all(...args, opts.limit) as Row[]).map(
      toDelivery,
    );
  }

  /** Sends a finished (dead or delivered) delivery again, from the first try of the schedule, same webhook-id. */
  redeliver(id: number, now = Date.now()): boolean {
    const ok = this.s.redeliver.run(now, new Date(now).toISOString(), id).changes > 0;
    if (ok) this.wakeSoon();
    return ok;
  }

  redeliverDead(integrationId: number, now = Date.now()): number {
    const n = this.s.redeliverDead.run(now, new Date(now).toISOString(), integrationId).changes;
    if (n) this.wakeSoon();
    return n;
  }

  /** Lets the worker look again, e.g. after an integration was enabled. */
  wake(): void {
    this.wakeSoon();
  }

  counts(): Map<number, Record<DeliveryState, number>> {
    const out = new Map<number, Record<DeliveryState, number>>();
    for (const r of this.s.counts.all() as { integration_id: number; state: DeliveryState; n: number }[]) {
      let c = out.get(r.integration_id);
      if (!c) out.set(r.integration_id, (c = { pending: 0, delivered: 0, dead: 0 }));
      c[r.state] = r.n;
    }
    return out;
  }

  /** Pending and dead deliveries per integration, from partial indexes (cheap enough for every scrape). */
  backlog(): Map<number, { pending: number; dead: number }> {
    const out = new Map<number, { pending: number; dead: number }>();
    const get = (id: number) => out.get(id) ?? out.set(id, { pending: 0, dead: 0 }).get(id)!;
    for (const r of this.s.pendingCounts.all() as { integration_id: number; n: number }[]) get(r.integration_id).pending = r.n;
    for (const r of this.s.deadCounts.all() as { integration_id: number; n: number }[]) get(r.integration_id).dead = r.n;
    return out;
  }

  /** Forgets delivered deliveries older than `maxAgeMs`; dead letters stay until redelivered or their integration is deleted. */
  prune(maxAgeMs: number, now = Date.now()): number {
    return this.s.prune.run(new Date(now - maxAgeMs).toISOString()).changes;
  }
}
