import { describe, expect, it } from 'vitest';
import { cleanLabels, cutToStored, MAX_DESCRIPTION, MAX_LABEL, MAX_TITLE } from './fields.js';
import { ALERT_SCHEMA, type AlertPayload, MAX_SAMPLES } from './payload.js';

function alert(o: Partial<AlertPayload> = {}): AlertPayload {
  const t = '2026-01-01T00:00:00Z';
  return {
    schema: ALERT_SCHEMA,
    source: 'falco',
    fingerprint: 'f',
    severity: 'high',
    title: 'Shell in container',
    description: 'A shell ran',
    cluster: 'c',
    namespace: 'n',
    count: 1,
    first_seen: t,
    last_seen: t,
    policies: [],
    rule: 'r',
    labels: { pod: 'p' },
    falco: {
      rule: 'r',
      priority: 'Error',
      source: 'syscall',
      hostname: 'h',
      output: 'o'.repeat(10_000),
      tags: [],
      output_fields: { 'proc.cmdline': 'c'.repeat(10_000) },
    },
    samples: [],
    ...o,
  };
}

describe('the fields the store cuts', () => {
  it('leaves an alert within the limits as it is', () => {
    const a = alert({ title: 't'.repeat(MAX_TITLE), description: 'd'.repeat(MAX_DESCRIPTION), labels: { pod: 'p'.repeat(MAX_LABEL) } });
    const r = cutToStored(a);
    expect(r.cut).toEqual([]);
    expect(r.alert).toEqual(a);
    expect(r.alert.labels).toBe(a.labels);
  });

  it('cuts title, description and labels, keeps the newest samples, and never touches the details', () => {
    const samples = Array.from({ length: MAX_SAMPLES + 2 }, (_, i) => ({ n: i }));
    const a = alert({
      title: `${'t'.repeat(MAX_TITLE - 1)}\u{1F600}`,
      description: 'd'.repeat(MAX_DESCRIPTION + 1),
      labels: { pod: 'p'.repeat(MAX_LABEL + 1), cmd: 'a\nb', n: 3 as unknown as string, o: {} as unknown as string },
      samples,
    });
    const r = cutToStored(a);
    expect(r.cut).toEqual(['title', 'description', 'labels', 'oldest samples']);
    // Half an emoji is not kept.
    expect(r.alert.title).toBe('t'.repeat(MAX_TITLE - 1));
    expect(r.alert.description).toBe('d'.repeat(MAX_DESCRIPTION));
    expect(r.alert.labels).toEqual({ pod: 'p'.repeat(MAX_LABEL), cmd: 'a b', n: '3' });
    expect(r.alert.samples).toEqual(samples.slice(-MAX_SAMPLES));
    expect(r.alert.falco).toBe(a.falco);
    // The alert given is not changed.
    expect(a.description.length).toBe(MAX_DESCRIPTION + 1);
  });

  it('cuts labels once: cleaned labels are kept as they are', () => {
    const once = cleanLabels({ pod: `${'p'.repeat(MAX_LABEL)}\r\nmore`, n: 1 });
    expect(cleanLabels(once)).toBe(once);
  });
});
