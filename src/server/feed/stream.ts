import type { WebSocket } from 'ws';
import { errText, type Logger } from '../../shared/log/logger.js';
import type { FeedTokens } from '../auth/feed-tokens.js';
import type { AlertFilter } from '../store/alert-query.js';
import type { AlertStore, ChangeListener, ChangesPage, StoredAlert } from '../store/alert-store.js';
import { alertView } from './alerts-routes.js';
import { textFrame, writeFrame, type Frame } from './frames.js';

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
//
// Cost per commit: each changed alert is serialized at most once; each distinct
// full-text query runs once; each distinct filter works out what each change is
// to it (a signature), and each distinct signature is one message, encoded and
// framed once (frames.ts); each client then costs one socket write of that
// frame. All changes of one ingest() arrive as one onChange call, so they go
// out as one frame per client.
//
// Backpressure: a client with more than maxBuffered bytes unsent is taken off
// the live path (nothing more is queued for it in memory) and fed from the
// database by cursor once its buffer drains, so a slow reader neither delays
// the others nor grows the server's memory, and still misses nothing.

const CATCH_UP_PAGE = 500;
/** Past this much unsent data a client is fed from the database until it drains. */
const MAX_BUFFERED = 4 * 1024 * 1024;
const PING_MS = 30_000;

export interface StreamHubOptions {
  pingMs?: number;
  /** Unsent bytes past which a client is fed from the database (default 4 MiB; tests lower it). */
  maxBuffered?: number;
}

interface Client {
  ws: WebSocket;
  filter: AlertFilter;
  /** Clients with the same filters share one message per commit (so do others that agree on it). */
  key: string;
  /** The search (q), which store.matchingText reads as the list does. */
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
  if (f.policy?.length && !a.policies.some((p) => f.policy!.some((want) => (want.includes('/') ? want === `${p.namespace}/${p.name}` : want === p.name))))
    return 'skip';
  if (f.since !== undefined && lastSeenMs < f.since) return 'skip';
  // These can change on an alert, so a client may hold one that no longer matches.
  if (f.status?.length && !f.status.includes(a.status)) return 'removed';
  if (f.severity?.length && !f.severity.includes(a.severity as never)) return 'removed';
  // The list's window is on last_seen, which a repeat moves forward: past `until`, the alert leaves the view.
  if (f.until !== undefined && lastSeenMs > f.until) return 'removed';
  return 'alert';
}

/** One letter per changed alert: what it is to a client. */
const OUTCOME = { alert: 'a', removed: 'r', skip: 's' } as const;

/** The "alerts" message for the changes `sig` marks as alerts or removals, or undefined when it marks none. */
function render(alerts: readonly StoredAlert[], sig: string, cursor: number, json: (a: StoredAlert, i: number) => string): string | undefined {
  let out = '';
  let removed = '';
  for (let i = 0; i < alerts.length; i++) {
    const k = sig.charCodeAt(i);
    if (k === 97 /* a */) out += (out ? ',' : '') + json(alerts[i]!, i);
    else if (k === 114 /* r */) removed += (removed ? ',' : '') + String(alerts[i]!.id);
  }
  if (!out && !removed) return undefined;
  return `{"type":"alerts","cursor":${cursor},"alerts":[${out}],"removed":[${removed}]}`;
}

interface Prepared {
  lastSeenMs: number;
  json: string | undefined;
}

export class StreamHub {
  private readonly clients = new Set<Client>();
  // Only committed changes go out: the broadcast waits for the store's commit.
  private readonly onChanged: ChangeListener = (changes, tx) => {
    const alerts = changes.map((c) => c.alert);
    tx.afterCommit(() => this.broadcast(alerts));
  };
  private readonly stopListening: () => void;
  private readonly pingTimer: NodeJS.Timeout;
  private readonly maxBuffered: number;

  constructor(
    private readonly store: AlertStore,
    private readonly tokens: FeedTokens,
    private readonly log: Logger,
    opts: StreamHubOptions = {},
  ) {
    this.maxBuffered = opts.maxBuffered ?? MAX_BUFFERED;
    this.stopListening = store.onChange(this.onChanged);
    this.pingTimer = setInterval(() => this.ping(), opts.pingMs ?? PING_MS);
    this.pingTimer.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Starts streaming to a connected socket: from `cursor` if given, else from now. */
  add(ws: WebSocket, filter: AlertFilter, cursor: number | undefined, tokenId: number): void {
    // The search as the list reads it (searchTerms), so both find the same alerts.
    const fts = filter.q;
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
    if (c.ws.bufferedAmount > this.maxBuffered) {
      c.timer = setTimeout(() => this.catchUp(c), 50);
      return;
    }
    let page: ChangesPage;
    try {
      page = this.store.changesSince(c.sent, c.filter, CATCH_UP_PAGE);
    } catch (e) {
      this.log.error({ error: errText(e) }, 'Live stream: reading changes failed; closing the stream so the client reconnects');
      c.ws.close(1011, 'server error; reconnect with your cursor');
      this.remove(c);
      return;
    }
    const rows = page.alerts;
    // A full page, or a read that stopped at the store's bound on rows examined (filters that match
    // few of the changes): send what it found, continue after the last change it examined on the next
    // tick, so a cursor far behind never holds the store (and ingest) for the whole walk.
    if (rows.length === CATCH_UP_PAGE || page.scannedTo !== undefined) {
      const cursor = page.scannedTo ?? rows[rows.length - 1]!.seq;
      this.send(c, this.frameOf(this.message(c, rows, cursor)));
      c.sent = cursor;
      c.timer = setTimeout(() => this.catchUp(c), 0);
      return;
    }
    // The last page: nothing can be committed between this read and going live.
    const cursor = this.store.currentSeq();
    if (rows.length) this.send(c, this.frameOf(this.message(c, rows, cursor)));
    c.sent = cursor;
    c.live = true;
    this.send(c, textFrame(`{"type":"live","cursor":${cursor}}`));
  }

  private frameOf(text: string | undefined): Frame | undefined {
    return text === undefined ? undefined : textFrame(text);
  }

  private send(c: Client, f: Frame | undefined): void {
    if (f !== undefined && c.ws.readyState === c.ws.OPEN) writeFrame(c.ws, f);
  }

  /** An "alerts" message for a catch-up page (the database applied the full-text query), or undefined when nothing in it concerns the client. */
  private message(c: Client, alerts: readonly StoredAlert[], cursor: number): string | undefined {
    let sig = '';
    for (const a of alerts) sig += OUTCOME[classify(c.filter, a, Date.parse(a.last_seen))];
    return render(alerts, sig, cursor, (a) => JSON.stringify(alertView(a)));
  }

  private broadcast(alerts: StoredAlert[]): void {
    if (!this.clients.size) return;
    try {
      this.broadcastLive(alerts);
    } catch (e) {
      // Never fail the ingest that emitted this; the clients lose nothing, they are fed from the database.
      this.log.error({ error: errText(e) }, 'Live stream: sending a change failed; catching the streams up from the database');
      for (const c of this.clients) this.offLive(c);
    }
  }

  /** Stops sending live to a client and feeds it from the database by cursor instead. */
  private offLive(c: Client): void {
    if (!c.live) return;
    c.live = false;
    c.timer = setTimeout(() => this.catchUp(c), 50);
  }

  private broadcastLive(alerts: StoredAlert[]): void {
    let cursor = 0;
    for (const a of alerts) if (a.seq > cursor) cursor = a.seq;
    const ids = alerts.map((a) => a.id);
    // Once per commit: each alert's times, and its JSON when some client first needs it.
    const prep: Prepared[] = alerts.map((a) => ({ lastSeenMs: Date.parse(a.last_seen), json: undefined }));
    const json = (a: StoredAlert, i: number) => (prep[i]!.json ??= JSON.stringify(alertView(a)));
    // Once per distinct full-text query: which of the changed alerts match it.
    const fts = new Map<string, Set<number>>();
    // Once per distinct filter: what each alert is to it (a signature of OUTCOME letters);
    // once per distinct signature: the message, encoded and framed. Filters that differ
    // (a relative `since` is a different instant for every client) mostly agree on what
    // a commit means to them, so 500 clients cost a handful of frames, not 500.
    const byKey = new Map<string, Frame | undefined>();
    const bySig = new Map<string, Frame | undefined>();
    for (const c of this.clients) {
      if (!c.live) continue;
      if (c.ws.bufferedAmount > this.maxBuffered) {
        // Too slow to keep up: stop queueing in memory and feed it from the database once it drains.
        this.offLive(c);
        continue;
      }
      let f: Frame | undefined;
      if (byKey.has(c.key)) {
        f = byKey.get(c.key);
      } else {
        let matching: Set<number> | undefined;
        if (c.fts !== undefined) {
          matching = fts.get(c.fts);
          if (!matching) fts.set(c.fts, (matching = this.store.matchingText(ids, c.fts)));
        }
        let sig = '';
        for (let i = 0; i < alerts.length; i++) {
          const a = alerts[i]!;
          sig += matching && !matching.has(a.id) ? OUTCOME.skip : OUTCOME[classify(c.filter, a, prep[i]!.lastSeenMs)];
        }
        if (bySig.has(sig)) {
          f = bySig.get(sig);
        } else {
          const text = render(alerts, sig, cursor, json);
          f = text === undefined ? undefined : textFrame(text);
          bySig.set(sig, f);
        }
        byKey.set(c.key, f);
      }
      this.send(c, f);
      c.sent = cursor;
    }
  }

  private ping(): void {
    if (!this.clients.size) return;
    let active: Set<number> | undefined;
    try {
      active = new Set(
        this.tokens
          .list()
          .filter((t) => !t.revoked_at)
          .map((t) => t.id),
      );
    } catch (e) {
      // This runs in a timer: a database error must not escape it. Revocations are
      // checked again at the next ping; dead connections are still found in this one.
      this.log.error({ error: errText(e) }, 'Live stream: reading the feed tokens failed; checking revocations at the next ping');
    }
    for (const c of this.clients) {
      if (!c.alive) {
        c.ws.terminate();
        this.remove(c);
        continue;
      }
      // A revoked token ends its streams too, not only its next request.
      if (active && !active.has(c.tokenId)) {
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
    this.stopListening();
    for (const c of this.clients) {
      c.ws.close(1001, 'server shutting down; reconnect with your cursor');
      this.remove(c);
    }
  }
}
