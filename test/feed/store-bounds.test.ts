import { describe, expect, it } from 'vitest';
import { MAX_SAMPLES } from '../../src/shared/alert/payload.js';
import { AlertStore, OCCURRENCES_KEPT } from '../../src/server/store/alert-store.js';
import { MAX_SAMPLE_BYTES } from '../../src/shared/alert/samples.js';
import { openServerDb } from '../../src/server/store/server-db.js';
import { ciliumPayload, falcoPayload } from '../../src/server/store/test-payloads.js';

// What one alert may hold stays bounded whatever an agent sends: samples per
// event and their size, the occurrences kept, title and description length,
// and what a repeat adds to the searchable text.

describe('alert store bounds', () => {
  it('keeps at most MAX_SAMPLES samples, each at most MAX_SAMPLE_BYTES, and the latest OCCURRENCES_KEPT occurrences', () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    const p = ciliumPayload({ fp: 'big' });
    p.samples = Array.from({ length: 12 }, (_, i) => ({ n: i, blob: i === 11 ? 'x'.repeat(100_000) : '' }));
    p.title = 'T'.repeat(10_000);
    p.description = 'D'.repeat(100_000);
    const [a] = store.ingest('edge', [{ id: 'b-0', payload: p }]).alerts;
    const got = store.get(a!.id)!;
    expect(got.title.length).toBeLessThanOrEqual(200);
    expect(got.description.length).toBeLessThanOrEqual(4000);
    expect(got.samples).toHaveLength(MAX_SAMPLES);
    expect(got.samples.slice(0, -1).map((s) => (s as { n: number }).n)).toEqual([7, 8, 9, 10]);
    // The oversized one is a preview that says so.
    const last = got.samples.at(-1) as { truncated: boolean; bytes: number; preview: string };
    expect(last).toMatchObject({ truncated: true });
    expect(last.bytes).toBeGreaterThan(100_000);
    expect(JSON.stringify(last).length).toBeLessThanOrEqual(MAX_SAMPLE_BYTES);

    for (let i = 1; i < 3 * OCCURRENCES_KEPT; i++) store.ingest('edge', [{ id: `b-${i}`, payload: { ...p, samples: [{ n: i }] } }]);
    const d = store.detail(a!.id)!;
    expect(d.alert.count).toBe(3 * OCCURRENCES_KEPT);
    expect(d.occurrences).toHaveLength(OCCURRENCES_KEPT);
    // The ring, and the occurrence that set the severity, kept once the ring moved past it.
    expect((db.prepare('SELECT count(*) AS n FROM alert_occurrences WHERE alert_id = ?').get(a!.id) as { n: number }).n).toBe(OCCURRENCES_KEPT + 1);
    expect(d.severity_occurrence!.event_id).toBe('b-0');
    expect(d.alert.samples).toHaveLength(MAX_SAMPLES);
    db.close();
  });

  it('bounds what repeats add to the searchable text (new pods are searchable, up to a limit)', () => {
    const db = openServerDb(':memory:');
    const store = new AlertStore(db);
    for (let i = 0; i < 200; i++) store.ingest('edge', [{ id: `s-${i}`, payload: falcoPayload({ fp: 'churn', pod: `web-${i}-${'p'.repeat(40)}` }) }]);
    const id = store.list({ limit: 1 }).alerts[0]!.id;
    // What search sees: the text the alert opened with, and one row per value added since.
    const text = (
      db
        .prepare(
          "SELECT s.search_text || coalesce((SELECT group_concat(char(10) || value, '') FROM alerts_fts_added WHERE rowid BETWEEN @id * 64 AND @id * 64 + 63), '') AS t FROM alert_search s WHERE id = @id",
        )
        .get({ id }) as { t: string }
    ).t;
    expect(text.split('\n').length).toBeGreaterThan(10);
    expect(text.length).toBeLessThanOrEqual(4096 + 600);
    expect(store.list({ limit: 10, q: `web-3-${'p'.repeat(40)}` }).alerts.map((a) => a.id)).toEqual([id]);
    db.close();
  });
});
