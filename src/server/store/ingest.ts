import { cleanLabels, storedDescription, storedTitle } from '../../shared/alert/fields.js';
import { FOLD_SETS_SEVERITY, type FoldSummary, foldIn } from '../../shared/alert/fold.js';
import { MAX_SAMPLES, SEVERITY_RANK, type Severity } from '../../shared/alert/payload.js';
import { cutSample, fitsBytes, MAX_SAMPLE_BYTES } from '../../shared/alert/samples.js';
import type { DB } from '../../shared/sqlite/open.js';
import type { AlertChange, Changes } from './changes.js';
import { openEntry, type OpenAlerts, type OpenEntry, type PendingOccurrence } from './open-alerts.js';
import { RollupDelta, rollupKeys, type Rollups } from './rollups.js';
import { alertOf, iso } from './rows.js';
import { SearchText, type SearchIndex } from './search-text.js';
import { CLOCK_SKEW_MS, OCCURRENCES_KEPT, PINNED_SLOT, RECEIVED_PRECISION_MS, type IncomingEvent, type IngestResult, type StoredAlert } from './types.js';

// Stores agent batches. An alert groups occurrences by agent and fingerprint:
// a repeat of an open alert (triggered, acknowledged or ignored) increments
// it; a repeat of a resolved one opens a new alert. Event ids make a re-sent
// batch idempotent. A batch is one transaction and one row write per alert.

const digit = (s: string, i: number) => s.charCodeAt(i) - 48;
const two = (s: string, i: number) => digit(s, i) * 10 + digit(s, i + 1);
const DIGITS_AT = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];

function fixedDigits(s: string): boolean {
  for (const i of DIGITS_AT) {
    const c = digit(s, i);
    if (c < 0 || c > 9) return false;
  }
  return true;
}

/**
 * Date.parse, without its cost for the form agents send (RFC 3339 in UTC,
 * "2024-06-01T10:42:07.123Z", with 0 to 9 fractional digits, as Cilium and
 * Falco write it): anything else, or a day past the 28th, goes to Date.parse.
 */
export function timeMs(s: string, fallback: number): number {
  const n = s.length;
  if (
    n >= 20 &&
    s.charCodeAt(4) === 45 &&
    s.charCodeAt(7) === 45 &&
    s.charCodeAt(10) === 84 &&
    s.charCodeAt(13) === 58 &&
    s.charCodeAt(16) === 58 &&
    s.charCodeAt(n - 1) === 90
  ) {
    const y = two(s, 0) * 100 + two(s, 2);
    const mo = two(s, 5);
    const d = two(s, 8);
    const h = two(s, 11);
    const mi = two(s, 14);
    const sec = two(s, 17);
    let ms = 0;
    // Date.UTC takes years below 100 as 19xx.
    let ok = fixedDigits(s) && y >= 1000 && mo >= 1 && mo <= 12 && d >= 1 && d <= 28 && h >= 0 && h <= 23 && mi >= 0 && mi <= 59 && sec >= 0 && sec <= 59;
    if (n > 20) {
      // A fraction: "." and 1 to 9 digits, of which milliseconds are kept (truncated, as Date.parse does).
      ok &&= s.charCodeAt(19) === 46 && n <= 30 && n >= 22;
      for (let i = 20; ok && i < n - 1; i++) {
        const c = digit(s, i);
        if (c < 0 || c > 9) ok = false;
        else if (i < 23) ms = ms * 10 + c;
      }
      for (let i = n - 1; i < 23; i++) ms *= 10;
    }
    if (ok) return Date.UTC(y, mo - 1, d, h, mi, sec, ms);
  }
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : fallback;
}

/** Whether two label sets hold the same values (an occurrence's labels equal to the alert's are not stored again). */
function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  let n = 0;
  for (const k in a) {
    if (a[k] !== b[k]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

/** Samples of which one or more is over the cap, as stored (JSON) and as the batch's alert shows them. */
function capSamples(kept: readonly unknown[]): { json: string; values: unknown[] } {
  const parts: string[] = [];
  const values: unknown[] = [];
  for (const s of kept) {
    const json = JSON.stringify(s) ?? 'null';
    const value = cutSample(s, json);
    values.push(value);
    parts.push(value === s ? json : JSON.stringify(value));
  }
  return { json: `[${parts.join(',')}]`, values };
}

/**
 * The alert's and the occurrence's summaries as foldIn takes them, one of each
 * for the process: foldIn folds into the first in place and keeps neither, and
 * two objects a repeat are garbage the mix's CPU shows.
 */
const foldInto: FoldSummary<number> = { count: 0, first_seen: 0, last_seen: 0, severity: 'info', title: '', description: '' };
const foldOcc: FoldSummary<number> = { count: 0, first_seen: 0, last_seen: 0, severity: 'info', title: '', description: '' };

function entryToAlert(e: OpenEntry, updatedAt: string): StoredAlert {
  const r = e.row;
  // Date formatting is a visible cost at 50,000 alerts/s: first_seen and the receipt, which seldom
  // change, are formatted again only when they did (last_seen changes with nearly every batch).
  if (e.iso.first[0] !== r.first_seen) e.iso.first = [r.first_seen, iso(r.first_seen)];
  if (e.iso.received[0] !== r.last_received_at) e.iso.received = [r.last_received_at, iso(r.last_received_at)];
  // Policies, labels and details are shared with the cache, which replaces rather than mutates them.
  return alertOf(r, {
    policies: e.policies,
    labels: e.labels,
    details: e.details,
    samples: e.batchSamples ?? [],
    first_seen: e.iso.first[1],
    created_at: e.iso.created,
    updated_at: updatedAt,
    last_received_at: e.iso.received[1],
  });
}

export class Ingest {
  private readonly s;
  private lastId: number;

  constructor(
    db: DB,
    private readonly changes: Changes,
    private readonly open: OpenAlerts,
    private readonly rollups: Rollups,
    private readonly index: SearchIndex,
  ) {
    this.s = {
      insertAlert: db.prepare(`INSERT INTO alerts (id, fingerprint, agent, status, source, severity, severity_rank, cluster, namespace, rule,
        count, events, first_seen, last_seen, created_at, updated_at, last_received_at, clock_skew, severity_event, seq) VALUES (?, ?, ?, 'triggered', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      // search_text (as the alert opened) lives in alert_search; alert_text's column stays empty.
      insertText: db.prepare("INSERT INTO alert_text (id, title, description, policies, labels, details, search_text) VALUES (?, ?, ?, ?, ?, ?, '')"),
      insertSearch: db.prepare('INSERT INTO alert_search (id, search_text) VALUES (?, ?)'),
      // Separate statements, so that an index or the full-text row is touched only when its column changed.
      updateAlert: db.prepare('UPDATE alerts SET count = ?, events = ?, first_seen = ?, last_seen = ?, updated_at = ?, seq = ? WHERE id = ?'),
      updateSeverity: db.prepare('UPDATE alerts SET severity = ?, severity_rank = ?, severity_event = ? WHERE id = ?'),
      pin: db.prepare(`INSERT OR REPLACE INTO alert_occurrences (alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples)
        SELECT alert_id, ?, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples FROM alert_occurrences INDEXED BY alert_occurrences_slot
        WHERE alert_id = ? AND slot = ? AND event_no = ?`),
      unpin: db.prepare('DELETE FROM alert_occurrences WHERE alert_id = ? AND slot = ?'),
      keepDescription: db.prepare('UPDATE alert_occurrences INDEXED BY alert_occurrences_slot SET description = ? WHERE alert_id = ? AND description IS NULL'),
      updateReceipt: db.prepare('UPDATE alerts SET last_received_at = ?, clock_skew = ? WHERE id = ?'),
      updateText: db.prepare('UPDATE alert_text SET title = ?, description = ? WHERE id = ?'),
      insertPolicy: db.prepare('INSERT OR IGNORE INTO alert_policies (alert_id, kind, namespace, name) VALUES (?, ?, ?, ?)'),
      insertEvent: db.prepare('INSERT OR IGNORE INTO alert_events (event_id, alert_id, received_at) VALUES (?, ?, ?)'),
      putOccurrence:
        db.prepare(`INSERT OR REPLACE INTO alert_occurrences (alert_id, slot, event_no, event_id, received_at, count, first_seen, last_seen, severity, description, labels, samples)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    };
    // Ids are assigned here so an event id can be claimed before its alert row
    // exists; AUTOINCREMENT's counter keeps ids of purged alerts from coming back.
    const seqRow = db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'alerts'").get() as { seq: number } | undefined;
    const maxRow = db.prepare('SELECT coalesce(max(id), 0) AS m FROM alerts').get() as { m: number };
    this.lastId = Math.max(seqRow?.seq ?? 0, maxRow.m);
  }

  /** Stores a batch in one transaction; the caller acknowledges after it returns. */
  ingest(agent: string, events: readonly IncomingEvent[]): IngestResult {
    const now = Date.now();
    const touched: OpenEntry[] = [];
    const id0 = this.lastId;
    try {
      return this.changes.commit(() => {
        const r = this.write(agent, events, now, touched);
        const nowIso = iso(now);
        const changes: AlertChange[] = [];
        const alerts: StoredAlert[] = [];
        for (const e of touched) {
          const alert = entryToAlert(e, nowIso);
          alerts.push(alert);
          changes.push({ type: 'stored', alert, opened: e.isNew, events: e.batchEvents ?? [] });
        }
        return { changes, result: { ...r, alerts } };
      });
    } catch (err) {
      // The rows were rolled back; the cache must not remember them either.
      this.lastId = id0;
      this.open.drop(touched);
      throw err;
    } finally {
      this.open.committed(touched);
    }
  }

  private write(agent: string, events: readonly IncomingEvent[], now: number, touched: OpenEntry[]): { stored: number; duplicates: number } {
    const s = this.s;
    const rollup = new RollupDelta();
    let stored = 0;
    let duplicates = 0;
    for (const ev of events) {
      const p = ev.payload;
      let e = this.open.get(agent, p.fingerprint);
      const alertId = e ? e.row.id : this.lastId + 1;
      // Claim the event id first: a re-sent batch must not count twice, and a
      // re-send of an event whose alert was resolved since must not reopen it.
      if (s.insertEvent.run(ev.id, alertId, now).changes === 0) {
        duplicates++;
        continue;
      }
      stored++;
      const first = timeMs(p.first_seen, now);
      const last = p.last_seen === p.first_seen ? first : timeMs(p.last_seen, first);
      const severity: Severity = p.severity;
      // Cut field by field as cutToStored cuts them (shared/alert/fields.ts), without its copy of each
      // payload: the title goes into the fold, the description and labels into the occurrence.
      const description = storedDescription(p.description);
      const labels = cleanLabels(p.labels);
      // Times are kept as the event gives them; a fast clock is only flagged (retention goes by receipt).
      const received = ev.receivedAt ?? now;
      const skewed = last > received + CLOCK_SKEW_MS ? 1 : 0;
      if (!e) {
        this.lastId = alertId;
        const details = p.cilium ? { cilium: p.cilium } : p.falco ? { falco: p.falco } : {};
        const row = {
          id: alertId,
          fingerprint: p.fingerprint,
          agent,
          status: 'triggered' as const,
          source: p.source,
          severity,
          severity_rank: SEVERITY_RANK[severity] ?? 0,
          title: storedTitle(p.title),
          description,
          cluster: p.cluster,
          namespace: p.namespace,
          policies: JSON.stringify(p.policies),
          rule: p.rule,
          labels: JSON.stringify(labels),
          details: JSON.stringify(details),
          count: 0,
          events: 0,
          first_seen: first,
          last_seen: last,
          created_at: now,
          updated_at: now,
          last_received_at: received,
          clock_skew: skewed,
          severity_event: 0,
          seq: 0,
        };
        e = openEntry(row, {
          labels,
          policies: p.policies,
          details,
          search: SearchText.of(p.namespace, p.policies, p.rule),
          mainText: '',
          isNew: true,
        });
        rollup.addKeys(e.rollupKeys, 1, 0);
        e.search.add(labels);
        this.open.add(e);
        for (const pr of p.policies) s.insertPolicy.run(alertId, pr.kind, pr.namespace, pr.name);
        e.row.count = p.count;
      } else {
        const r = e.row;
        // Everything folds by the one rule (shared/alert/fold.ts): the severity
        // is the highest of the occurrences and never drops while the alert is
        // open; title and description are those of the occurrence that set it
        // (the first to arrive at that severity), so a repeat rewrites only the
        // narrow row, and the text row and full-text index change only when an
        // occurrence raises the severity.
        // Labels stay the first occurrence's; each occurrence keeps its own.
        foldInto.count = r.count;
        foldInto.first_seen = r.first_seen;
        foldInto.last_seen = r.last_seen;
        foldInto.severity = r.severity as Severity;
        foldInto.title = r.title;
        foldInto.description = r.description;
        foldOcc.count = p.count;
        foldOcc.first_seen = first;
        foldOcc.last_seen = last;
        foldOcc.severity = severity;
        foldOcc.title = storedTitle(p.title);
        foldOcc.description = description;
        const folded = foldIn<number>(foldInto, foldOcc);
        if (foldInto.title !== r.title || foldInto.description !== r.description) {
          e.indexedText ??= { title: r.title, description: r.description };
          r.title = foldInto.title;
          r.description = foldInto.description;
        }
        if (folded & FOLD_SETS_SEVERITY) {
          // The batch's occurrences so far count under the old keys, then the alert moves to the new ones.
          rollup.addKeys(e.rollupKeys, 0, e.batchCount);
          e.batchCount = 0;
          rollup.addKeys(e.rollupKeys, -1, -r.count);
          r.severity = foldInto.severity;
          r.severity_rank = SEVERITY_RANK[foldInto.severity] ?? 0;
          r.severity_event = r.events;
          e.severityChanged = true;
          e.pinnedStale = true;
          e.rollupKeys = rollupKeys(r, e.policies);
          rollup.addKeys(e.rollupKeys, 1, r.count);
        }
        if (e.search.add(labels)) e.searchChanged = true;
        r.first_seen = foldInto.first_seen;
        r.last_seen = foldInto.last_seen;
        r.count = foldInto.count;
        if (received - r.last_received_at >= RECEIVED_PRECISION_MS || skewed > r.clock_skew) {
          r.last_received_at = Math.max(r.last_received_at, received);
          r.clock_skew |= skewed;
          e.receiptChanged = true;
        }
      }
      const r = e.row;
      e.batchCount += p.count;
      const eventNo = r.events++;
      r.updated_at = now;
      r.seq = this.changes.next();
      // Only the newest OCCURRENCES_KEPT of a batch can survive in the ring, so a
      // burst of one alert writes (and serialises) no more occurrences than that.
      const pending = (e.pending ??= []);
      if (pending.length === OCCURRENCES_KEPT) {
        const out = pending.shift()!;
        if (out.no === r.severity_event) e.pendingSetter = out;
      }
      pending.push({ no: eventNo, id: ev.id, count: p.count, first, last, severity, description, labels, samples: p.samples });
      if (e.batchEvents) {
        e.batchEvents.push(ev.id);
      } else {
        // The alert's first event of this batch.
        e.batchEvents = [ev.id];
        touched.push(e);
      }
    }
    // One row write per alert per batch, however many of its events came, in id
    // order: FTS5 flushes its pending terms to a new segment whenever a rowid
    // comes below the one before it in a transaction, which makes each full-text
    // write of a batch in arrival order cost 3.5x one in rowid order.
    const byId = touched.length > 1 ? touched.slice().sort((a, b) => a.row.id - b.row.id) : touched;
    for (const e of byId) {
      rollup.addKeys(e.rollupKeys, 0, e.batchCount);
      e.batchCount = 0;
      this.writeAlert(e, now);
    }
    rollup.writeTo(this.rollups);
    return { stored, duplicates };
  }

  private putOccurrence(e: OpenEntry, o: PendingOccurrence, slot: number, now: number): void {
    const r = e.row;
    // An occurrence's newest samples; no sample is over the cap when all of them together are
    // not, so the common case is one JSON.stringify and no object besides its string.
    let values: readonly unknown[] = o.samples.length > MAX_SAMPLES ? o.samples.slice(-MAX_SAMPLES) : o.samples;
    let samples = JSON.stringify(values);
    if (!fitsBytes(samples, MAX_SAMPLE_BYTES)) {
      const c = capSamples(values);
      samples = c.json;
      values = c.values;
    }
    // Labels that differ in a value or a key serialise differently: only labels the alert's equal are stored as null
    // (the alert's labels are its first occurrence's and never change, so null keeps meaning the same labels).
    const labelsJson = sameLabels(o.labels, e.labels) ? null : JSON.stringify(o.labels);
    // The ring: slot = n mod size, so the oldest occurrence is overwritten in place.
    this.s.putOccurrence.run(
      r.id,
      slot,
      o.no,
      o.id,
      now,
      o.count,
      o.first,
      o.last,
      o.severity,
      // Null means the alert's description as it is now; writeAlert keeps that true when it changes.
      o.description === r.description ? null : o.description,
      labelsJson,
      samples,
    );
    if (values.length && slot !== PINNED_SLOT) {
      // Only this batch's alert holds the array yet (committed() replaces it), so it may grow in place.
      const b = (e.batchSamples ??= []);
      for (const v of values) b.push(v);
      if (b.length > MAX_SAMPLES) b.splice(0, b.length - MAX_SAMPLES);
    }
  }

  private writeAlert(e: OpenEntry, now: number): void {
    const s = this.s;
    const r = e.row;
    // Occurrences stored as null read the alert's description, which an occurrence raising the severity
    // just changed (the fold rule): they get the one they meant written out before this batch's are
    // stored against the new one, so an occurrence reads its own text however events were grouped into
    // batches (Kafka replicas group the same log differently). Storing every occurrence's description
    // instead grows a full ring by a third; this is one write of the ring only when the text changes.
    if (!e.isNew && e.indexedText && e.indexedText.description !== r.description) s.keepDescription.run(e.indexedText.description, r.id);
    if (e.pinnedStale) s.unpin.run(r.id, PINNED_SLOT);
    if (e.pendingSetter) this.putOccurrence(e, e.pendingSetter, PINNED_SLOT, now);
    const setter = r.severity_event;
    for (const o of e.pending ?? []) {
      const slot = o.no % OCCURRENCES_KEPT;
      // The ring is about to overwrite the occurrence that set the severity: it moves to the pinned slot (a no-op once it has).
      if (o.no > setter && slot === setter % OCCURRENCES_KEPT && !e.isNew) s.pin.run(PINNED_SLOT, r.id, slot, setter);
      this.putOccurrence(e, o, slot, now);
    }
    e.pending = undefined;
    e.pendingSetter = undefined;
    e.pinnedStale = false;
    const text = e.search.text;
    if (e.isNew) {
      s.insertAlert.run(
        r.id,
        r.fingerprint,
        r.agent,
        r.source,
        r.severity,
        r.severity_rank,
        r.cluster,
        r.namespace,
        r.rule,
        r.count,
        r.events,
        r.first_seen,
        r.last_seen,
        r.created_at,
        r.updated_at,
        r.last_received_at,
        r.clock_skew,
        // A later event of the opening batch may have raised the severity already.
        r.severity_event,
        r.seq,
      );
      s.insertText.run(r.id, r.title, r.description, r.policies, r.labels, r.details);
      s.insertSearch.run(r.id, text);
      this.index.insert(r.id, r.title, r.description, text);
      e.mainText = text;
      // Values of the batch that opened the alert are in its main text.
      e.search.fresh = undefined;
      // A later occurrence of the batch raised the severity, and changed the text, before anything was indexed.
      e.indexedText = undefined;
      return;
    }
    s.updateAlert.run(r.count, r.events, r.first_seen, r.last_seen, r.updated_at, r.seq, r.id);
    const was = e.indexedText;
    if (was) {
      s.updateText.run(r.title, r.description, r.id);
      this.index.remove(r.id, was.title, was.description, e.mainText);
      this.index.insert(r.id, r.title, r.description, e.mainText);
      e.indexedText = undefined;
    }
    if (e.severityChanged) s.updateSeverity.run(r.severity, r.severity_rank, r.severity_event, r.id);
    if (e.receiptChanged) s.updateReceipt.run(r.last_received_at, r.clock_skew, r.id);
    // Each value new to the alert is appended to the added-values index, once: alert_search and the main index stay as the alert opened.
    if (e.searchChanged) this.index.addFresh(r.id, e.search);
  }
}
