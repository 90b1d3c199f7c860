import type { WebSocket } from 'ws';
import type { Logger } from '../../shared/log/logger.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import { toFtsQuery, type AlertFilter } from '../store/alert-query.js';
import type { AlertStore, StoredAlert } from '../store/alert-store.js';
import { alertView } from './alerts-routes.js';

// The live stream: every change of an alert that matches a client's filters,
// pushed as it is committed, resumable from a cursor without gap or duplicate.
//
// The cursor is the store's change counter (seq). A client that is live has
// been sent everything up to `sent`; each commit carries seqs above it, so
// forwarding commits in order keeps the stream exact. A client that connects
// with an older cursor, or falls behind because it reads slowly, is fed from
// the database by seq instead (`changesSince`) until it has caught up; since
// better-sqlite3 is synchronous, no commit can slip in between the last page
// of that catch-up and the switch to live.
//
// Messages (JSON text frames), all carrying the cursor to resume from:
//   {"type":"alerts","cursor":N,"alerts":[...],"removed":[ids]}
//     alerts: changed alerts that match the filters, in change order;
//     removed: alerts that changed and no longer match (e.g. acknowledged while
//     the client watches status=triggered), so a client can drop them.
//   {"type":"live","cursor":N}   caught up; what follows is live.

const CATCH_UP_PAGE = 500;
/** Past this much unsent data a client is fed from the database until it drains. */
const MAX_BUFFERED = 4 * 1024 * 1024;
const PING_MS = 30_000;

export interface StreamHubOptions {
  pingMs?: number;
}

interface Client {
  ws: WebSocket;
  filter: AlertFilter;
  /** Clients with the same filters share one message per commit. */
  key: string;
  fts?: string;
  /** Everything up to this seq has been sent (or did not match). */
  sent: number;
  live: boolean;
  tokenId: number;
  alive: boolean;
  timer?: NodeJS.Timeout;
}

/** Whether a change of this alert goes to the client as an alert, as a removal, or not at all. */
function classify(f: AlertFilter, a: StoredAlert, lastSeenMs: number): 'alert' | 'removed' | 'skip' {
  if (f.source?.length && !f.source.includes(a.source)) return 'skip';
  if (f.agent?.length && !f.agent.includes(a.agent)) return 'skip';
  if (f.namespace?.length && !f.namespace.includes(a.namespace)) return 'skip';
  if (f.rule?.length && !f.rule.includes(a.rule)) return 'skip';
  if (f.policy?.length && !a.policies.some((p) => f.policy!.some((want) => (want.includes('/') ? want === `${p.namespace}/${p.name}` : want === p.name)))) return 'skip';
  if (f.since !== undefined && lastSeenMs < f.since) return 'skip';
  // These can change on an alert, so a client may hold one that no longer matches.
  if (f.status?.length && !f.status.includes(a.status)) return 'removed';
  if (f.severity?.length && !f.severity.includes(a.severity as never)) return 'removed';
  if (f.until !== undefined && Date.parse(a.first_seen) > f.until) return 'removed';
  return 'alert';
}

export class StreamHub {
  private readonly clients = new Set<Client>();
  private readonly onChanged = (alerts: StoredAlert[]) => this.broadcast(alerts);
  private readonly pingTimer: NodeJS.Timeout;

  constructor(private readonly store: AlertStore, private readonly tokens: FeedTokens, private readonly log: Logger, opts: StreamHubOptions = {}) {
    store.on('changed', this.onChanged);
    this.pingTimer = setInterval(() => this.ping(), opts.pingMs ?? PING_MS);
    this.pingTimer.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts streaming to a connected socket: from `cursor` if given, else from now. */
  add(ws: WebSocket, filter: AlertFilter, cursor: number | undefined, tokenId: number): void {
    const fts = filter.q ? toFtsQuery(filter.q) : undefined;
    const c: Client = { ws, filter, key: JSON.stringify(filter), fts, sent: cursor ?? this.store.currentSeq(), live: false, tokenId, alive: true };
    this.clients.add(c);
    ws.on('close', () => this.remove(c));
    ws.on('error', () => this.remove(c));
    ws.on('pong', () => {
      c.alive = true;
    });
    // Clients have nothing to say; a message is not an error, but it is not read either.
    ws.on('message', () => {});
    this.catchUp(c);
  }

  private remove(c: Client): void {
    if (c.timer) clearTimeout(c.timer);
    this.clients.delete(c);
  }

  /** Sends database pages of changes after c.sent until none are left, then goes live. */
  private catchUp(c: Client): void {
    c.timer = undefined;
    if (!this.clients.has(c)) return;
    if (c.ws.bufferedAmount > MAX_BUFFERED) {
      c.timer = setTimeout(() => this.catchUp(c), 50);
      return;
    }
    let rows: StoredAlert[];
    try {
      rows = this.store.changesSince(c.sent, c.filter, CATCH_UP_PAGE);
    } catch (e) {
      this.log.error({ error: (e as Error).message }, 'Live stream: reading changes failed; closing the stream so the client reconnects');
      c.ws.close(1011, 'server error; reconnect with your cursor');
      this.remove(c);
      return;
    }
    if (rows.length === CATCH_UP_PAGE) {
      const cursor = rows[rows.length - 1]!.seq;
      this.send(c, this.message(c, rows, cursor, false));
      c.sent = cursor;
      c.timer = setTimeout(() => this.catchUp(c), 0);
      return;
    }
    // The last page: nothing can be committed between this read and going live.
    const cursor = this.store.currentSeq();
    if (rows.length) this.send(c, this.message(c, rows, cursor, false));
    c.sent = cursor;
    c.live = true;
    this.send(c, JSON.stringify({ type: 'live', cursor }));
  }

  private send(c: Client, msg: string | Buffer | undefined): void {
    if (msg !== undefined && c.ws.readyState === c.ws.OPEN) c.ws.send(msg, { binary: false });
  }

  /** An "alerts" message for one client, or undefined when nothing in `alerts` concerns it. */
  private message(c: Client, alerts: readonly StoredAlert[], cursor: number, liveFts: boolean, json?: (a: StoredAlert) => string): string | undefined {
    const matching = liveFts && c.fts ? this.store.matchingText(alerts.map((a) => a.id), c.fts) : undefined;
    const out: string[] = [];
    const removed: number[] = [];
    for (const a of alerts) {
      if (matching && !matching.has(a.id)) continue;
      const k = classify(c.filter, a, Date.parse(a.last_seen));
      if (k === 'alert') out.push(json ? json(a) : JSON.stringify(alertView(a)));
      else if (k === 'removed') removed.push(a.id);
    }
    if (!out.length && !removed.length) return undefined;
    return `{"type":"alerts","cursor":${cursor},"alerts":[${out.join(',')}],"removed":${JSON.stringify(removed)}}`;
  }

  private broadcast(alerts: StoredAlert[]): void {
    if (!this.clients.size) return;
    let cursor = 0;
    for (const a of alerts) if (a.seq > cursor) cursor = a.seq;
    // Each alert is serialized once, and each distinct filter builds one message, however many clients share them.
    const json = new Map<number, string>();
    const view = (a: StoredAlert) => {
      let s = json.get(a.id);
      if (s === undefined) {
        s = JSON.stringify(alertView(a));
        json.set(a.id, s);
      }
      return s;
    };
    // Encoded once: 500 clients must not mean 500 UTF-8 conversions of the same text.
    const byFilter = new Map<string, Buffer | undefined>();
    for (const c of this.clients) {
      if (!c.live) continue;
      if (c.ws.bufferedAmount > MAX_BUFFERED) {
        // Too slow to keep up: stop queueing in memory and feed it from the database once it drains.
        c.live = false;
        c.timer = setTimeout(() => this.catchUp(c), 50);
        continue;
      }
      let msg: Buffer | undefined;
      if (byFilter.has(c.key)) {
        msg = byFilter.get(c.key);
      } else {
        const text = this.message(c, alerts, cursor, true, view);
        msg = text === undefined ? undefined : Buffer.from(text);
        byFilter.set(c.key, msg);
      }
      this.send(c, msg);
      c.sent = cursor;
    }
  }

  private ping(): void {
    if (!this.clients.size) return;
    const active = new Set(this.tokens.list().filter((t) => !t.revoked_at).map((t) => t.id));
    for (const c of this.clients) {
      if (!c.alive) {
        c.ws.terminate();
        this.remove(c);
        continue;
      }
      // A revoked token ends its streams too, not only its next request.
      if (!active.has(c.tokenId)) {
        c.ws.close(4401, 'the feed token was revoked');
        this.remove(c);
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  close(): void {
    clearInterval(this.pingTimer);
    this.store.off('changed', this.onChanged);
    for (const c of this.clients) {
      c.ws.close(1001, 'server shutting down; reconnect with your cursor');
      this.remove(c);
    }
  }
}
