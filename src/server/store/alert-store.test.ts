import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AlertStore, OCCURRENCES_KEPT, type AlertChange, type StoredAlert } from './alert-store.js';
import { toFtsQuery } from './alert-query.js';
import { VerdictError } from '../../shared/errors.js';
import { openServerDb } from './server-db.js';
import { ciliumPayload, falcoPayload } from './test-payloads.js';
import { cutToStored, MAX_DESCRIPTION, MAX_LABEL, MAX_TITLE } from '../../shared/alert/fields.js';
import { MAX_SAMPLE_BYTES } from '../../shared/alert/samples.js';
import type { Severity } from '../../shared/alert/payload.js';

let ev = 0;
const id = () => `ev-${++ev}`;

function fresh() {
  const db = openServerDb(':memory:');
  return { db, store: new AlertStore(db) };
}

describe('AlertStore ingest', () => {
  it('groups repeats of an open alert and counts them, keeping first and last seen', () => {
    const { store } = fresh();
    const a = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ time: '2024-05-01T10:00:00.000Z' }) }]);
    expect(a).toMatchObject({ stored: 1, duplicates: 0 });
    const b = store.ingest('edge', [
      { id: id(), payload: ciliumPayload({ time: '2024-05-01T10:05:00.000Z', count: 3 }) },
      { id: id(), payload: ciliumPayload({ time: '2024-05-01T09:55:00.000Z' }) },
    ]);
    expect(b.stored).toBe(2);
    expect(b.alerts).toHaveLength(1);
    const got = store.get(a.alerts[0]!.id)!;
    expect(got).toMatchObject({ count: 5, events: 3, first_seen: '2024-05-01T09:55:00.000Z', last_seen: '2024-05-01T10:05:00.000Z', status: 'triggered' });
    expect(store.list({ limit: 10 }).alerts).toHaveLength(1);
  });

  it('keeps one alert per agent: the same fingerprint from two agents is two alerts', () => {
    const { store } = fresh();
    store.ingest('a', [{ id: id(), payload: ciliumPayload() }]);
    store.ingest('b', [{ id: id(), payload: ciliumPayload() }]);
    expect(
      store
        .list({ limit: 10 })
        .alerts.map((x) => x.agent)
        .sort(),
    ).toEqual(['a', 'b']);
  });

  it('ignores a re-sent event id, also within one batch', () => {
    const { store } = fresh();
    const e = { id: id(), payload: ciliumPayload() };
    expect(store.ingest('edge', [e, e])).toMatchObject({ stored: 1, duplicates: 1 });
    expect(store.ingest('edge', [e])).toMatchObject({ stored: 0, duplicates: 1, alerts: [] });
    expect(store.list({ limit: 10 }).alerts[0]!.count).toBe(1);
  });

  it('opens a new alert when a resolved one repeats, and a re-send of its old event does not', () => {
    const { store } = fresh();
    const first = { id: id(), payload: ciliumPayload() };
    const [a] = store.ingest('edge', [first]).alerts;
    store.setStatus(a!.id, 'resolved', 'token:alice');
    expect(store.ingest('edge', [first]).stored).toBe(0);
    expect(store.list({ limit: 10 }).alerts).toHaveLength(1);
    const [b] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    expect(b!.id).not.toBe(a!.id);
    expect(b!.status).toBe('triggered');
    expect(store.get(a!.id)!.status).toBe('resolved');
  });

  it('increments an acknowledged or ignored alert rather than opening another', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [{ id: id(), payload: falcoPayload() }]).alerts;
    store.setStatus(a!.id, 'ignored', 'me');
    const [b] = store.ingest('edge', [{ id: id(), payload: falcoPayload() }]).alerts;
    expect(b).toMatchObject({ id: a!.id, status: 'ignored', count: 2 });
  });

  it('gives every change a new seq and hands it to listeners, after commit when they ask', () => {
    const { store } = fresh();
    const seen: StoredAlert[][] = [];
    store.onChange((x, tx) => tx.afterCommit(() => seen.push(x.map((c) => c.alert))));
    const [a] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    const [b] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    const c = store.setStatus(a!.id, 'acknowledged', 'me')!;
    expect(b!.seq).toBeGreaterThan(a!.seq);
    expect(c.seq).toBeGreaterThan(b!.seq);
    expect(store.currentSeq()).toBe(c.seq);
    expect(seen.map((x) => x[0]!.seq)).toEqual([a!.seq, b!.seq, c.seq]);
    // No change, no new seq.
    store.setStatus(a!.id, 'acknowledged', 'me');
    expect(seen).toHaveLength(3);
  });

  it('runs change listeners inside the transaction and rolls everything back when one throws', () => {
    const { store } = fresh();
    const before = store.currentSeq();
    let fail = true;
    let committed = 0;
    store.onChange((_, tx) => {
      if (fail) throw new Error('outbox full');
      tx.afterCommit(() => committed++);
    });
    const e = { id: id(), payload: ciliumPayload() };
    expect(() => store.ingest('edge', [e])).toThrow('outbox full');
    expect(store.currentSeq()).toBe(before);
    expect(store.list({ limit: 10 }).alerts).toHaveLength(0);
    fail = false;
    // Same event again: not a duplicate, since nothing was committed.
    expect(store.ingest('edge', [e]).stored).toBe(1);
    expect(store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts[0]!.count).toBe(2);
    expect(committed).toBe(2);
  });

  it('tells listeners which events each alert took and which alert a batch opened', () => {
    const { store } = fresh();
    const seen: AlertChange[] = [];
    store.onChange((x) => seen.push(...x));
    const e1 = { id: id(), payload: falcoPayload() };
    const e2 = { id: id(), payload: falcoPayload() };
    store.ingest('edge', [e1, e2, e1]);
    store.ingest('edge', [{ id: 'later', payload: falcoPayload() }]);
    expect(seen.map((c) => c.type === 'stored' && [c.opened, c.events])).toEqual([
      [true, [e1.id, e2.id]],
      [false, ['later']],
    ]);
    expect(store.alertOfEvent(e2.id)).toBe(seen[0]!.alert.id);
    store.setStatus(seen[0]!.alert.id, 'resolved', 'me');
    expect(seen.at(-1)).toMatchObject({ type: 'status', from: 'triggered', actor: 'me', alert: { status: 'resolved' } });
  });

  it('reads as the occurrence that set its severity: a repeat, even an older one arriving late, keeps the text, a rise brings its own, and search follows', () => {
    const { store } = fresh();
    const send = (minute: number, output: string, severity: Severity = 'high') =>
      store.ingest('edge', [
        { id: id(), payload: falcoPayload({ fp: 'text', severity, time: new Date(Date.UTC(2024, 0, 1, 0, minute)).toISOString(), output }) },
      ]).alerts[0]!;
    const a = send(10, 'opened by quokka');
    send(20, 'repeated by wombat');
    expect(store.get(a.id)!.description).toContain('quokka');
    expect(store.list({ limit: 10, q: 'wombat' }).alerts).toHaveLength(0);
    send(5, 'late numbat');
    expect(store.get(a.id)!.description).toContain('quokka');
    expect(store.get(a.id)!.first_seen).toBe('2024-01-01T00:05:00.000Z');
    expect(store.list({ limit: 10, q: 'numbat' }).alerts).toHaveLength(0);
    send(30, 'raised by bilby', 'critical');
    expect(store.get(a.id)!.description).toContain('bilby');
    expect(store.list({ limit: 10, q: 'bilby' }).alerts.map((x) => x.id)).toEqual([a.id]);
    expect(store.list({ limit: 10, q: 'quokka' }).alerts).toHaveLength(0);
  });

  it('shows each occurrence with its own description and labels, however its events were grouped into batches', () => {
    // Kafka replicas store the same log in different batches; an occurrence must read the same on each.
    const at = (minute: number) => new Date(Date.UTC(2024, 5, 1, 10, minute)).toISOString();
    const a = { id: 'g-a', payload: falcoPayload({ fp: 'g', pod: 'web-a', time: at(10), output: 'a: received first' }) };
    const b = { id: 'g-b', payload: falcoPayload({ fp: 'g', pod: 'web-b', time: at(20), output: 'b: a repeat' }) };
    const c = { id: 'g-c', payload: falcoPayload({ fp: 'g', pod: 'web-c', severity: 'critical', time: at(0), output: 'c: older, received last' }) };
    const stored = (batches: (typeof a)[][]) => {
      const { store } = fresh();
      let alertId = 0;
      for (const batch of batches) alertId = store.ingest('edge', batch).alerts[0]!.id;
      const d = store.detail(alertId)!;
      return {
        description: d.alert.description,
        labels: d.alert.labels,
        occurrences: Object.fromEntries(d.occurrences.map((o) => [o.event_id, [o.description, o.labels.pod]])),
      };
    };
    const want = {
      // The text of the occurrence that raised the severity (the fold rule); labels stay the first occurrence's.
      description: 'c: older, received last',
      labels: a.payload.labels,
      occurrences: { 'g-a': ['a: received first', 'web-a'], 'g-b': ['b: a repeat', 'web-b'], 'g-c': ['c: older, received last', 'web-c'] },
    };
    expect(stored([[a], [b], [c]])).toEqual(want);
    expect(stored([[a, b], [c]])).toEqual(want);
    expect(stored([[a], [b, c]])).toEqual(want);
    expect(stored([[a, b, c]])).toEqual(want);
  });

  it('keeps the text and the occurrence that set the severity when an older one of its severity arrives late', () => {
    const { store } = fresh();
    const at = (second: number) => new Date(Date.UTC(2024, 5, 1, 10, 0, second)).toISOString();
    const send = (id: string, second: number, severity: 'low' | 'critical', output: string) =>
      store.ingest('edge', [{ id, payload: falcoPayload({ fp: 'p', severity, time: at(second), output }) }]).alerts[0]!;
    const a = send('p-open', 10, 'low', 'the same text');
    send('p-crit', 11, 'critical', 'the same text');
    // The ring moves past it: it is read from the pinned slot.
    for (let i = 0; i <= OCCURRENCES_KEPT; i++) send(`p-low-${i}`, 12 + i, 'low', `repeat ${i}`);
    expect(store.detail(a.id)!.occurrences.map((o) => o.event_id)).not.toContain('p-crit');
    send('p-late', 0, 'critical', 'an older text, received late');
    const d = store.detail(a.id)!;
    expect(d.alert.description).toBe('the same text');
    expect(d.alert.first_seen).toBe(at(0));
    expect(d.severity_occurrence).toMatchObject({ event_id: 'p-crit', description: 'the same text' });
  });

  it("takes the highest severity of an open alert's occurrences and keeps the occurrence that set it in view", () => {
    const { store } = fresh();
    const t = (i: number) => new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString();
    const send = (i: number, severity: 'low' | 'critical') =>
      store.ingest('edge', [{ id: `sev-${i}`, payload: falcoPayload({ fp: 'sev', severity, time: t(i), output: `occurrence ${i} (${severity})` }) }])
        .alerts[0]!;
    send(0, 'low');
    send(1, 'critical');
    const a = send(2, 'low');
    expect(a.severity).toBe('critical');
    let d = store.detail(a.id)!;
    expect(d.alert.severity).toBe('critical');
    expect(d.severity_occurrence).toMatchObject({ event_id: 'sev-1', severity: 'critical', description: 'occurrence 1 (critical)' });
    expect(JSON.stringify(d.severity_occurrence!.samples)).toContain('occurrence 1 (critical)');
    expect(d.occurrences[0]).toMatchObject({ event_id: 'sev-2', severity: 'low' });
    expect(store.counts('severity', {})).toEqual([{ key: 'critical', alerts: 1, events: 3 }]);
    // Long after the ring moved past it, one event a batch and then a burst in one batch.
    for (let i = 3; i < 3 + OCCURRENCES_KEPT + 5; i++) send(i, 'low');
    store.ingest(
      'edge',
      Array.from({ length: 45 }, (_, i) => ({ id: `burst-sev-${i}`, payload: falcoPayload({ fp: 'sev', severity: 'low', time: t(40 + i) }) })),
    );
    d = store.detail(a.id)!;
    expect(d.alert.severity).toBe('critical');
    expect(d.severity_occurrence).toMatchObject({ event_id: 'sev-1', severity: 'critical' });
    expect(d.occurrences).toHaveLength(OCCURRENCES_KEPT);
    expect(d.occurrences.every((o) => o.severity === 'low')).toBe(true);
    expect(store.get(a.id)!.samples.some((x) => JSON.stringify(x).includes('(critical)'))).toBe(false);
  });

  it('keeps the occurrence that raised the severity when the alert opens in the same batch (an agent backlog drained at once)', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [
      { id: 'o-low', payload: falcoPayload({ fp: 'o', severity: 'low', output: 'notice 3' }) },
      { id: 'o-crit', payload: falcoPayload({ fp: 'o', severity: 'critical', output: 'crit 4' }) },
      { id: 'o-low-2', payload: falcoPayload({ fp: 'o', severity: 'low', output: 'notice 5' }) },
    ]).alerts;
    const d = store.detail(a!.id)!;
    expect(d.alert.severity).toBe('critical');
    expect(d.severity_occurrence).toMatchObject({ event_id: 'o-crit', severity: 'critical', description: 'crit 4' });
    // And when the rest of that batch pushes it out of the ring.
    const batch = [
      { id: 'p-low', payload: falcoPayload({ fp: 'p', severity: 'low' }) },
      { id: 'p-crit', payload: falcoPayload({ fp: 'p', severity: 'critical', output: 'the critical one' }) },
    ];
    for (let i = 0; i < OCCURRENCES_KEPT + 5; i++) batch.push({ id: `p-low-${i}`, payload: falcoPayload({ fp: 'p', severity: 'low' }) });
    const [b] = store.ingest('edge', batch).alerts;
    expect(store.detail(b!.id)!.severity_occurrence).toMatchObject({ event_id: 'p-crit', description: 'the critical one' });
  });

  it('keeps the occurrence that raised the severity when a burst in one batch pushes it out of the ring', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [{ id: 'b-0', payload: falcoPayload({ fp: 'b', severity: 'low' }) }]).alerts;
    const burst = [{ id: 'b-crit', payload: falcoPayload({ fp: 'b', severity: 'critical', output: 'the critical one' }) }];
    for (let i = 0; i < 30; i++) burst.push({ id: `b-low-${i}`, payload: falcoPayload({ fp: 'b', severity: 'low' }) });
    store.ingest('edge', burst);
    const d = store.detail(a!.id)!;
    expect(d.alert.severity).toBe('critical');
    expect(d.severity_occurrence).toMatchObject({ event_id: 'b-crit', severity: 'critical', description: 'the critical one' });
    // Another critical occurrence sets nothing: the first of the highest severity stays the one shown.
    store.ingest('edge', [{ id: 'b-crit-2', payload: falcoPayload({ fp: 'b', severity: 'critical' }) }]);
    expect(store.detail(a!.id)!.severity_occurrence!.event_id).toBe('b-crit');
    const [r] = store.ingest('edge', [{ id: 'b-low-late', payload: falcoPayload({ fp: 'b', severity: 'low' }) }]).alerts;
    expect(r!.severity).toBe('critical');
  });

  it('keeps the latest occurrences and samples in bounded rings', () => {
    const { store } = fresh();
    let alertId = 0;
    for (let i = 0; i < 30; i++)
      alertId = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ time: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString() }) }]).alerts[0]!.id;
    const d = store.detail(alertId)!;
    expect(d.occurrences).toHaveLength(OCCURRENCES_KEPT);
    expect(d.occurrences[0]!.event_no).toBe(29);
    expect(d.occurrences.at(-1)!.event_no).toBe(10);
    expect(d.alert.samples).toHaveLength(5);
    expect((d.alert.samples.at(-1) as { time: string }).time).toBe('2024-01-01T00:29:00.000Z');
  });

  it('caps a non-ASCII sample in UTF-8 bytes: kept whole at MAX_SAMPLE_BYTES, a preview a byte over', () => {
    const { store } = fresh();
    // Its JSON ('"ab' and euro signs of 3 bytes, '"') is MAX_SAMPLE_BYTES bytes, a third of that in characters.
    const at = `ab${'\u20ac'.repeat((MAX_SAMPLE_BYTES - 4) / 3)}`;
    const [a] = store.ingest('edge', [{ id: id(), payload: { ...falcoPayload({ fp: 'wide' }), samples: [at] } }]).alerts;
    expect(store.get(a!.id)!.samples).toEqual([at]);
    store.ingest('edge', [{ id: id(), payload: { ...falcoPayload({ fp: 'wide' }), samples: [`${at}x`] } }]);
    const d = store.detail(a!.id)!;
    expect(d.alert.samples.at(-1)).toEqual({ truncated: true, bytes: MAX_SAMPLE_BYTES + 1, preview: `"ab${'\u20ac'.repeat(681)}` });
    expect(d.occurrences[0]!.samples).toEqual([d.alert.samples.at(-1)]);
    expect(d.occurrences[1]!.samples).toEqual([at]);
  });

  it('cuts title, description and labels as cutToStored does, so what the agent cuts to fit a message loses nothing the store keeps', () => {
    const { store } = fresh();
    const base = falcoPayload({ fp: 'long' });
    const payload = {
      ...base,
      // The cut falls inside the emoji: it is left out whole.
      title: `${'t'.repeat(MAX_TITLE - 1)}\u{1F600}tail`,
      description: 'd'.repeat(MAX_DESCRIPTION + 10),
      labels: { ...base.labels, pod: 'p'.repeat(MAX_LABEL + 1), cmd: 'a\nb' },
    };
    const expected = cutToStored(payload).alert;
    expect(expected.title).toBe('t'.repeat(MAX_TITLE - 1));
    const [a] = store.ingest('edge', [{ id: id(), payload }]).alerts;
    for (const stored of [a!, store.get(a!.id)!]) {
      expect(stored.title).toBe(expected.title);
      expect(stored.description).toBe(expected.description);
      expect(stored.labels).toEqual(expected.labels);
    }
    // The change record (from ingest's cache) and a read (from the row) are the same alert.
    expect(store.get(a!.id)).toEqual(a);
  });

  it('keeps the same rings when a burst of one alert comes in a single batch', () => {
    const { store } = fresh();
    const t = (i: number) => new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString();
    const first = store.ingest('edge', [{ id: id(), payload: ciliumPayload({ time: t(0) }) }]).alerts[0]!;
    const burst = Array.from({ length: 45 }, (_, i) => ({ id: `burst-${i}`, payload: ciliumPayload({ time: t(i + 1), count: 2 }) }));
    const [changed] = store.ingest('edge', burst).alerts;
    expect(changed!.count).toBe(91);
    expect(changed!.events).toBe(46);
    expect((changed!.samples.at(-1) as { time: string }).time).toBe(t(45));
    const d = store.detail(first.id)!;
    expect(d.occurrences.map((o) => o.event_no)).toEqual(Array.from({ length: OCCURRENCES_KEPT }, (_, i) => 45 - i));
    expect(d.occurrences.map((o) => o.event_id)).toEqual(Array.from({ length: OCCURRENCES_KEPT }, (_, i) => `burst-${44 - i}`));
    expect(d.occurrences[0]!.count).toBe(2);
    expect((d.alert.samples.at(-1) as { time: string }).time).toBe(t(45));
    // The skipped occurrences' event ids are still claimed: a re-send counts nothing.
    expect(store.ingest('edge', burst.slice(0, 5)).duplicates).toBe(5);
  });

  it('survives a restart: the open alert is found again from the database', () => {
    const dir = mkdtempSync(join(tmpdir(), 'verdict-store-'));
    let db = openServerDb(dir);
    let store = new AlertStore(db);
    const [a] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    db.close();
    db = openServerDb(dir);
    store = new AlertStore(db);
    const [b] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    expect(b).toMatchObject({ id: a!.id, count: 2 });
    expect(b!.seq).toBeGreaterThan(a!.seq);
    db.close();
  });
});

describe('AlertStore status', () => {
  it('records who changed what and when, any status to any other', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    for (const s of ['acknowledged', 'ignored', 'triggered', 'resolved', 'acknowledged'] as const) store.setStatus(a!.id, s, `token:${s}`);
    const d = store.detail(a!.id)!;
    expect(d.history.map((h) => `${h.from}>${h.to}`)).toEqual([
      'triggered>acknowledged',
      'acknowledged>ignored',
      'ignored>triggered',
      'triggered>resolved',
      'resolved>acknowledged',
    ]);
    expect(d.history[0]!.actor).toBe('token:acknowledged');
    expect(d.history[0]!.at).toMatch(/^\d{4}-/);
    expect(store.setStatus(999, 'resolved', 'x')).toBeUndefined();
  });

  it('runs status hooks inside the change, so a failing hook undoes it', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    const seen: string[] = [];
    store.onChange((changes) => {
      for (const c of changes) {
        if (c.type !== 'status') continue;
        seen.push(c.alert.status);
        if (c.alert.status === 'ignored') throw new Error('outbox full');
      }
    });
    store.setStatus(a!.id, 'resolved', 'x');
    expect(() => store.setStatus(a!.id, 'ignored', 'x')).toThrow('outbox full');
    expect(seen).toEqual(['resolved', 'ignored']);
    expect(store.get(a!.id)!.status).toBe('resolved');
    expect(store.detail(a!.id)!.history).toHaveLength(1);
    // The rolled-back change left no trace in the change counter either.
    expect(store.setStatus(a!.id, 'acknowledged', 'x')!.seq).toBe(store.currentSeq());
  });

  it('refuses to reopen a resolved alert while another is open for its fingerprint', () => {
    const { store } = fresh();
    const [a] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    store.setStatus(a!.id, 'resolved', 'x');
    const [b] = store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts;
    expect(() => store.setStatus(a!.id, 'triggered', 'x')).toThrow(expect.objectContaining({ constructor: VerdictError, code: 'VERDICT_CONFLICT' }));
    store.setStatus(b!.id, 'resolved', 'x');
    expect(store.setStatus(a!.id, 'triggered', 'x')!.status).toBe('triggered');
    // And the reopened one is the open alert new events count on.
    expect(store.ingest('edge', [{ id: id(), payload: ciliumPayload() }]).alerts[0]!.id).toBe(a!.id);
  });
});

describe('AlertStore queries', () => {
  function seeded() {
    const { store, db } = fresh();
    const t = (m: number) => new Date(Date.UTC(2024, 0, 1, 0, m)).toISOString();
    store.ingest('edge', [
      { id: id(), payload: ciliumPayload({ ns: 'shop', src: 'cart', dst: 'payments-api', time: t(1), severity: 'medium' }) },
      { id: id(), payload: ciliumPayload({ ns: 'db', src: 'web', dst: 'postgres', time: t(2), severity: 'high', policy: 'db-lockdown' }) },
      { id: id(), payload: falcoPayload({ ns: 'shop', pod: 'checkout-abc', time: t(3), severity: 'critical' }) },
      { id: id(), payload: falcoPayload({ rule: 'Write below etc', ns: 'kube-system', pod: 'coredns-1', time: t(4), severity: 'low' }) },
    ]);
    return { store, db };
  }

  it('filters by status, severity, source, namespace, policy, rule, agent and time', () => {
    const { store } = seeded();
    const titles = (q: Parameters<AlertStore['list']>[0]) => store.list(q).alerts.map((a) => `${a.namespace}:${a.source}`);
    expect(titles({ limit: 10 })).toEqual(['kube-system:falco', 'shop:falco', 'db:cilium', 'shop:cilium']);
    expect(titles({ limit: 10, severity: ['critical', 'high'] })).toEqual(['shop:falco', 'db:cilium']);
    expect(titles({ limit: 10, source: ['cilium'] })).toEqual(['db:cilium', 'shop:cilium']);
    expect(titles({ limit: 10, namespace: ['shop'] })).toEqual(['shop:falco', 'shop:cilium']);
    expect(titles({ limit: 10, policy: ['db/db-lockdown'] })).toEqual(['db:cilium']);
    expect(titles({ limit: 10, policy: ['db-lockdown'] })).toEqual(['db:cilium']);
    expect(titles({ limit: 10, policy: ['shop/db-lockdown'] })).toEqual([]);
    expect(titles({ limit: 10, rule: ['Write below etc'] })).toEqual(['kube-system:falco']);
    expect(titles({ limit: 10, agent: ['other'] })).toEqual([]);
    expect(titles({ limit: 10, since: Date.UTC(2024, 0, 1, 0, 2), until: Date.UTC(2024, 0, 1, 0, 3) })).toEqual(['shop:falco', 'db:cilium']);
    expect(titles({ limit: 10, status: ['triggered'], namespace: ['shop', 'db'], severity: ['medium', 'high'] })).toEqual(['db:cilium', 'shop:cilium']);
    expect(titles({ limit: 10, status: ['resolved'] })).toEqual([]);
  });

  it('lists an alert matching two of the policies asked for once', () => {
    const { store } = fresh();
    const p = ciliumPayload({ fp: 'two', policy: 'a' });
    p.policies.push({ kind: 'CiliumClusterwideNetworkPolicy', namespace: '', name: 'b' });
    store.ingest('edge', [{ id: id(), payload: p }]);
    expect(store.list({ limit: 10, policy: ['shop/a', 'b'] }).alerts).toHaveLength(1);
    expect(store.counts('policy', {}).map((c) => c.key)).toEqual(['b', 'shop/a']);
  });

  it('searches titles, outputs, pods and policy names, hyphenated terms included', () => {
    const { store } = seeded();
    const q = (text: string) => store.list({ limit: 10, q: text }).alerts.map((a) => a.namespace);
    expect(q('payments-api')).toEqual(['shop']);
    expect(q('checkout-abc')).toEqual(['shop']);
    expect(q('coredns')).toEqual(['kube-system']);
    expect(q('db-lockdown')).toEqual(['db']);
    expect(q('cmdline=bash')).toEqual(['kube-system', 'shop']);
    expect(q('"Write below"')).toEqual(['kube-system']);
    expect(q('pay')).toEqual([]); // words are whole words
    expect(q('pay*')).toEqual(['shop']); // unless they end in *
    expect(q('payments-ap*')).toEqual(['shop']);
    expect(q('payments -api')).toEqual(['shop']); // a lone "-" is not an operator
    expect(q('nothing-like-this')).toEqual([]);
    expect(q('AND OR NOT ( ) * : ^')).toEqual([]);
    expect(toFtsQuery('  -- ')).toBeUndefined();
  });

  it('finds an alert by a pod a repeat brought, and by its first output', () => {
    const { store } = fresh();
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'x', pod: 'web-1', output: 'first output' }) }]);
    expect(store.list({ limit: 10, q: 'web-2' }).alerts).toHaveLength(0);
    store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: 'x', pod: 'web-2', output: 'second output' }) }]);
    expect(store.list({ limit: 10, q: 'web-2' }).alerts).toHaveLength(1);
    expect(store.list({ limit: 10, q: 'web-1' }).alerts).toHaveLength(1);
    expect(store.list({ limit: 10, q: 'first output' }).alerts).toHaveLength(1);
    const d = store.detail(store.list({ limit: 1 }).alerts[0]!.id)!;
    expect(d.alert.description).toBe('first output');
    expect(d.occurrences.map((o) => o.description)).toEqual(['second output', 'first output']);
  });

  it('keeps the full-text index consistent through updates and purges', () => {
    const { store, db } = fresh();
    for (let i = 0; i < 40; i++) store.ingest('edge', [{ id: id(), payload: falcoPayload({ fp: `f${i % 10}`, pod: `pod-${i}` }) }]);
    store.purgeStep({ maxAgeMs: 1e15, maxRows: 5, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 100);
    // FTS5 compares its index with the content table.
    expect(() => db.exec("INSERT INTO alerts_fts (alerts_fts) VALUES ('integrity-check')")).not.toThrow();
    expect(store.list({ limit: 10, q: 'pod' }).alerts).toHaveLength(5);
  });

  it('pages with a cursor without gaps or repeats, for every sort and order', () => {
    const { store } = fresh();
    const base = Date.UTC(2024, 0, 1);
    const batch = [];
    // Many equal sort keys: the id breaks ties.
    for (let i = 0; i < 57; i++)
      batch.push({
        id: id(),
        payload: ciliumPayload({
          fp: `f${i}`,
          time: new Date(base + (i % 5) * 1000).toISOString(),
          severity: (['low', 'high', 'critical'] as const)[i % 3],
          count: (i % 4) + 1,
        }),
      });
    store.ingest('edge', batch);
    for (const sort of ['last_seen', 'created', 'count', 'severity'] as const) {
      for (const order of ['desc', 'asc'] as const) {
        const ids: number[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = store.list({ limit: 10, sort, order, cursor });
          ids.push(...page.alerts.map((a) => a.id));
          cursor = page.next_cursor ?? undefined;
          pages++;
        } while (cursor && pages < 20);
        expect(new Set(ids).size, `${sort} ${order}`).toBe(57);
        expect(ids).toHaveLength(57);
      }
    }
    // A filter that drives an index merge pages the same way.
    const ids: number[] = [];
    let cursor: string | undefined;
    do {
      const page = store.list({ limit: 7, severity: ['low', 'critical'], cursor });
      ids.push(...page.alerts.map((a) => a.id));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    expect(new Set(ids).size).toBe(38);
    const c = store.list({ limit: 10, sort: 'count' }).next_cursor!;
    expect(() => store.list({ limit: 10, sort: 'last_seen', cursor: c })).toThrow(/keep the sort/);
    expect(() => store.list({ limit: 10, cursor: 'garbage' })).toThrow(expect.objectContaining({ constructor: VerdictError, code: 'VERDICT_BAD_REQUEST' }));
  });

  it('returns short pages with a cursor when a filter matches few of many alerts, and never skips or repeats one', () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db, { scanBudget: 10 });
    const batch = [];
    for (let i = 0; i < 100; i++) {
      const time = new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString();
      batch.push({ id: id(), payload: i % 30 === 7 ? falcoPayload({ fp: `f${i}`, time }) : ciliumPayload({ fp: `c${i}`, time }) });
    }
    store.ingest('edge', batch);
    const ids: number[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = store.list({ limit: 2, source: ['falco'], cursor });
      expect(page.alerts.length).toBeLessThanOrEqual(2);
      ids.push(...page.alerts.map((a) => a.id));
      cursor = page.next_cursor ?? undefined;
      pages++;
    } while (cursor && pages < 50);
    expect(pages).toBeGreaterThan(5);
    // Alerts 8, 38, 68 and 98 are the Falco ones, newest first.
    expect(ids).toEqual([98, 68, 38, 8]);
  });

  it('counts by severity, source, rule, namespace and policy, with filters', () => {
    const { store } = seeded();
    expect(store.counts('severity', {})).toHaveLength(4);
    expect(store.counts('source', {})).toEqual([
      { key: 'cilium', alerts: 2, events: 2 },
      { key: 'falco', alerts: 2, events: 2 },
    ]);
    expect(store.counts('namespace', { source: ['falco'] })).toEqual([
      { key: 'kube-system', alerts: 1, events: 1 },
      { key: 'shop', alerts: 1, events: 1 },
    ]);
    expect(store.counts('policy', {})).toEqual([
      { key: 'db/db-lockdown', alerts: 1, events: 1 },
      { key: 'shop/payments-api-ingress', alerts: 1, events: 1 },
    ]);
    expect(store.counts('policy', { namespace: ['db'] })).toEqual([{ key: 'db/db-lockdown', alerts: 1, events: 1 }]);
    expect(store.counts('rule', { source: ['falco'], q: 'coredns' })).toEqual([{ key: 'Write below etc', alerts: 1, events: 1 }]);
  });

  it('keeps rollup counts equal to counting the alerts, through ingest, severity and status changes and purges', () => {
    const { store } = fresh();
    const sevs = ['critical', 'high', 'medium', 'low', 'info'] as const;
    let t = Date.UTC(2024, 0, 1);
    for (let round = 0; round < 6; round++) {
      const batch = [];
      for (let i = 0; i < 40; i++) {
        t += 1000;
        const time = new Date(t).toISOString();
        batch.push({
          id: id(),
          payload:
            i % 2
              ? ciliumPayload({
                  fp: `c${(i * 7 + round) % 13}`,
                  ns: `ns${i % 3}`,
                  severity: sevs[(i + round) % 5],
                  time,
                  count: (i % 3) + 1,
                  policy: `p${i % 4}`,
                })
              : falcoPayload({ fp: `f${i % 11}`, rule: `rule ${i % 3}`, ns: `ns${i % 4}`, severity: sevs[i % 5], time }),
        });
      }
      const changed = store.ingest(round % 2 ? 'a' : 'b', batch).alerts;
      for (const a of changed.slice(0, 5)) store.setStatus(a.id, (['resolved', 'acknowledged', 'ignored', 'triggered'] as const)[(a.id + round) % 4]!, 'x');
      if (round === 4) store.purgeStep({ maxAgeMs: 1e15, maxRows: 20, eventIdMaxAgeMs: 1e15, maxEventIds: 1e9 }, 7);
    }
    for (const by of ['severity', 'source', 'namespace', 'rule', 'policy', 'agent', 'status'] as const) {
      for (const status of [undefined, ['triggered', 'acknowledged'] as const, ['resolved'] as const]) {
        const f = status ? { status: [...status] } : {};
        const fromRollup = store.counts(by, f, 100);
        // A filter that matches everything sends counts() to SQL.
        const fromRows = store.counts(by, { ...f, since: 0 }, 100);
        expect(fromRollup, `${by} ${String(status)}`).toEqual(fromRows);
      }
    }
  });

  it('lists changes after a seq for the stream', () => {
    const { store } = seeded();
    const all = store.changesSince(0, {}, 100).alerts;
    expect(all.map((a) => a.seq)).toEqual([...all.map((a) => a.seq)].sort((x, y) => x - y));
    expect(all).toHaveLength(4);
    const after = all[1]!.seq;
    expect(store.changesSince(after, {}, 100).alerts).toHaveLength(2);
    expect(store.changesSince(0, { source: ['falco'], q: 'coredns' }, 100).alerts).toHaveLength(1);
  });
});
