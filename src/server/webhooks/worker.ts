import { setMaxListeners } from 'node:events';
import type http from 'node:http';
import { errText, type Logger } from '../../shared/log/logger.js';
import { Backoff } from '../../shared/retry/backoff.js';
import { VERSION } from '../../shared/version.js';
import type { Integration, IntegrationRegistry } from './integrations.js';
import * as m from './metrics.js';
import type { Delivery, Outcome } from './outbox.js';
import { newAgent, send, type SendResult } from './sender.js';
import { signatureHeader } from './signer.js';
import type { AddressPolicy } from '../../shared/net/ssrf.js';

// Takes due deliveries from a queue and sends them, at most `concurrency` at a
// time per integration. The worker does not know where deliveries come from
// (the SQLite outbox): a queue shared by replicas, which would let one take
// over another's backlog, only has to implement DeliveryQueue.

export interface DeliveryQueue {
  /** Due deliveries of one integration, leased to this worker for `leaseMs`. */
  claim(integrationId: number, limit: number, now: number, leaseMs: number): Delivery[];
  /** Earliest time (ms) a delivery of these integrations becomes due. */
  nextDueAt(integrationIds: readonly number[]): number | undefined;
  /** Records finished tries; false for a delivery that no longer exists. */
  finish(tries: readonly { d: Delivery; outcome: Outcome }[]): boolean[];
  onWake(fn: () => void): () => void;
}

export interface WorkerOptions {
  queue: DeliveryQueue;
  registry: IntegrationRegistry;
  policy: AddressPolicy;
  log: Logger;
  /** Tries in flight across all integrations. */
  maxInFlight?: number;
  /** Longest sleep between looks at the queue, as a safety net. */
  pollMs?: number;
  /** Full jitter on the retry schedule (tests turn it off). */
  jitter?: boolean;
  random?: () => number;
}

/** Retry-After beyond this is treated as this: a receiver cannot park a delivery for weeks. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
/** A lease outlives the try's timeout by this much. */
const LEASE_MARGIN_MS = 5_000;

export class DeliveryWorker {
  private readonly inFlight = new Map<number, number>(); // integration id -> tries in flight
  private readonly running = new Set<Promise<void>>();
  private readonly agents = new Map<number, { key: string; agent: http.Agent }>();
  private readonly abort = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private total = 0;
  private closed = false;
  private pumping = false;
  private pumpScheduled = false;
  private readonly unsubscribe: (() => void)[] = [];
  private toRecord: { d: Delivery; outcome: Outcome; done: (ok: boolean) => void }[] = [];
  private readonly maxInFlight: number;
  private readonly pollMs: number;

  constructor(private readonly o: WorkerOptions) {
    this.maxInFlight = o.maxInFlight ?? 64;
    this.pollMs = o.pollMs ?? 5_000;
    // Every try in flight listens for shutdown on this one signal.
    setMaxListeners(this.maxInFlight + 1, this.abort.signal);
    this.unsubscribe.push(o.queue.onWake(() => this.pump()));
    // An edited or deleted endpoint must not keep its old connections.
    this.unsubscribe.push(
      o.registry.onChange(() => {
        this.dropStaleAgents();
        this.pump();
      }),
    );
  }

  start(): void {
    this.pump();
  }

  /** Deferred so a burst of completions is one look at the queue (one claim transaction). */
  private pumpSoon(): void {
    if (this.closed || this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Looks for due deliveries now. */
  pump(): void {
    if (this.closed || this.pumping) return;
    this.pumping = true;
    try {
      clearTimeout(this.timer);
      this.timer = undefined;
      const now = Date.now();
      const withRoom: number[] = [];
      for (const i of this.o.registry.active()) {
        const room = Math.min(i.spec.concurrency - (this.inFlight.get(i.id) ?? 0), this.maxInFlight - this.total);
        if (room <= 0) continue;
        const got = this.o.queue.claim(i.id, room, now, i.spec.timeout + LEASE_MARGIN_MS);
        for (const d of got) this.launch(i, d);
        if (got.length < room) withRoom.push(i.id);
      }
      // Integrations at their limit are pumped again when a try ends.
      const next = this.total < this.maxInFlight ? this.o.queue.nextDueAt(withRoom) : undefined;
      const wait = Math.max(1, Math.min(this.pollMs, next === undefined ? this.pollMs : next - Date.now()));
      this.timer = setTimeout(() => this.pump(), wait);
    } catch (e) {
      this.o.log.error({ error: errText(e) }, 'Webhooks: reading the outbox failed; trying again shortly');
      this.timer = setTimeout(() => this.pump(), this.pollMs);
    } finally {
      // The listeners keep a server alive; this timer alone must not keep a failed start-up from exiting.
      this.timer?.unref();
      this.pumping = false;
    }
  }

  private launch(i: Integration, d: Delivery): void {
    this.inFlight.set(i.id, (this.inFlight.get(i.id) ?? 0) + 1);
    this.total++;
    const p = this.tryOnce(i, d)
      .catch((e: unknown) =>
        this.o.log.error(
          { error: errText(e), integration: i.name, delivery_id: d.id },
          'Webhooks: recording a try failed; the delivery is tried again when its lease ends',
        ),
      )
      .finally(() => {
        this.inFlight.set(i.id, (this.inFlight.get(i.id) ?? 1) - 1);
        this.total--;
        this.running.delete(p);
        this.pumpSoon();
      });
    this.running.add(p);
  }

  private agentFor(i: Integration, url: URL): http.Agent {
    const key = `${i.updated_at}|${url.href}|${i.spec.concurrency}`;
    const cur = this.agents.get(i.id);
    if (cur?.key === key) return cur.agent;
    cur?.agent.destroy();
    const agent = newAgent(url, i.spec.concurrency);
    this.agents.set(i.id, { key, agent });
    return agent;
  }

  private dropStaleAgents(): void {
    for (const [id, a] of this.agents) {
      const i = this.o.registry.byId(id);
      if (!i || !a.key.startsWith(`${i.updated_at}|`) || !a.key.endsWith(`|${i.spec.concurrency}`)) {
        a.agent.destroy();
        this.agents.delete(id);
      }
    }
  }

  /**
   * Tries that end in the same turn of the event loop are recorded in one
   * transaction: one commit per try is what limits throughput otherwise. A
   * crash before the commit only means the try is made again (at-least-once).
   */
  private record(d: Delivery, outcome: Outcome): Promise<boolean> {
    return new Promise((resolve) => {
      this.toRecord.push({ d, outcome, done: resolve });
      if (this.toRecord.length === 1) setImmediate(() => this.flush());
    });
  }

  private flush(): void {
    const batch = this.toRecord;
    this.toRecord = [];
    let ok: boolean[];
    try {
      ok = this.o.queue.finish(batch);
    } catch (e) {
      this.o.log.error(
        { error: errText(e), deliveries: batch.length },
        'Webhooks: recording tries failed; those deliveries are tried again when their lease ends',
      );
      ok = batch.map(() => false);
    }
    for (const [i, b] of batch.entries()) b.done(ok[i]!);
  }

  private async post(i: Integration, d: Delivery): Promise<SendResult> {
    let creds;
    try {
      creds = this.o.registry.credentials(i);
    } catch (e) {
      return { status: null, ok: false, error: `integration "${i.name}": ${errText(e)}`, reason: 'config', durationMs: 0 };
    }
    const url = creds.url;
    const ts = Math.floor(Date.now() / 1000);
    const headers: Record<string, string> = {
      ...i.spec.headers,
      'content-type': 'application/json',
      'user-agent': `Verdict/${VERSION} (webhooks)`,
      // Sent for every type: receivers of any format can de-duplicate on it.
      'webhook-id': d.webhook_id,
      'webhook-timestamp': String(ts),
    };
    if (creds.secrets.length) headers['webhook-signature'] = signatureHeader(creds.secrets, d.webhook_id, ts, d.body);
    if (creds.key !== undefined) headers.authorization = `Bearer ${creds.key}`;
    return send({ url, body: d.body, headers, timeoutMs: i.spec.timeout, policy: this.o.policy, agent: this.agentFor(i, url), signal: this.abort.signal });
  }

  private retryDelay(i: Integration, tries: number, retryAfterMs: number | undefined): number {
    const base = i.spec.retry_schedule[tries - 1]!;
    // The schedule is the documented contract, so jitter stays within ±10 % of
    // each wait: enough to spread a herd of retries after an outage. The draw
    // over that band is the project's backoff helper (full jitter).
    const band = Math.max(2, Math.round(base / 5));
    const offset =
      this.o.jitter === false
        ? band / 2
        : new Backoff({ initialMs: band, maxMs: band, jitter: true, ...(this.o.random ? { random: this.o.random } : {}) }).next();
    const wait = Math.round(base - band / 2 + offset);
    return Math.max(wait, Math.min(retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
  }

  private async tryOnce(i: Integration, d: Delivery): Promise<void> {
    const at = new Date().toISOString();
    const res = await this.post(i, d);
    // Shutting down: the try did not finish; the lease is released at the next start.
    if (res.reason === 'aborted') return;
    const attempt = { at, status: res.status, error: res.error, duration_ms: res.durationMs };
    const tries = d.attempts + 1;
    const ctx = { integration: i.name, delivery_id: d.id, webhook_id: d.webhook_id, attempt: tries };
    const labels = { integration: i.name };
    if (res.reason !== 'config' && res.reason !== 'refused_address') m.latency.observe(labels, res.durationMs / 1000);

    if (res.ok) {
      if (!(await this.record(d, { kind: 'delivered', attempt }))) return;
      m.delivered.inc(labels);
      if (tries > 1) this.o.log.info({ ...ctx, status: res.status }, 'Webhook delivered after retrying');
      else if (this.o.log.isLevelEnabled('debug')) this.o.log.debug({ ...ctx, status: res.status, duration_ms: res.durationMs }, 'Webhook delivered');
      return;
    }
    m.failedAttempts.inc({ ...labels, reason: res.reason ?? 'network' });
    if (res.status === 410) {
      if (!(await this.record(d, { kind: 'dead', attempt }))) return;
      m.deadLettered.inc(labels);
      // Tries in flight together each get the 410: the integration is disabled, counted and logged once. A try made
      // with an endpoint changed since, or before an enable, does not disable it.
      if (!this.o.registry.disable(i.id, `the endpoint answered 410 Gone at ${at}`, { integration: i, at: Date.parse(at) })) {
        this.o.log.debug(
          { ...ctx, status: 410 },
          `Webhook endpoint answered 410 Gone; integration "${i.name}" is disabled already, or was changed or enabled since this try began; this delivery is kept as a dead letter`,
        );
        return;
      }
      m.disabledTotal.inc(labels);
      this.o.log.error(
        { ...ctx, status: 410 },
        `Webhook endpoint answered 410 Gone: disabled integration "${i.name}" and kept this delivery as a dead letter; once the receiver is back, POST /api/v1/admin/integrations/${i.name}/enable and redeliver the dead letters`,
      );
      return;
    }
    if (tries > i.spec.retry_schedule.length) {
      if (!(await this.record(d, { kind: 'dead', attempt }))) return;
      m.deadLettered.inc(labels);
      this.o.log.error(
        { ...ctx, status: res.status, error: res.error },
        `Webhook delivery dead-lettered after ${tries} tries; fix the endpoint, then POST /api/v1/admin/integrations/${i.name}/deliveries/${d.id}/redeliver`,
      );
      return;
    }
    const delay = this.retryDelay(i, tries, res.retryAfterMs);
    if (!(await this.record(d, { kind: 'retry', attempt, at: Date.now() + delay }))) return;
    m.retried.inc(labels);
    this.o.log.warn({ ...ctx, status: res.status, error: res.error, retry_in_ms: delay }, 'Webhook delivery failed; it will be tried again');
  }

  /** Stops taking deliveries and abandons tries in flight (they are sent again after a restart). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const u of this.unsubscribe) u();
    this.abort.abort();
    await Promise.allSettled([...this.running]);
    for (const a of this.agents.values()) a.agent.destroy();
    this.agents.clear();
  }

  /** Tries in flight right now (for tests and the benchmark). */
  get busy(): number {
    return this.total;
  }
}
