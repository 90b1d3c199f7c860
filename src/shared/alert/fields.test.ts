import { describe, expect, it } from 'vitest';
import { cleanLabels, cutToStored, MAX_DESCRIPTION, MAX_LABEL, MAX_TITLE, storedDescription } from './fields.js';
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
    // A cut description says so, and by how much, as a cut detail value does.
    expect(r.alert.description).toBe(`${'d'.repeat(3975)}…[cut 26 of 4001 bytes]`);
    expect(r.alert.labels).toEqual({ pod: 'p'.repeat(MAX_LABEL), cmd: 'a b', n: '3' });
    expect(r.alert.samples).toEqual(samples.slice(-MAX_SAMPLES));
    expect(r.alert.falco).toBe(a.falco);
    // The alert given is not changed.
    expect(a.description.length).toBe(MAX_DESCRIPTION + 1);
  });

  it('marks a cut description with how much was cut, once, never splitting an emoji, and leaves one at the limit unmarked', () => {
    // MAX_DESCRIPTION units at most: the start, then "…" and the longest marker the sizes can make.
    const long = storedDescription('d'.repeat(8000));
    expect(long).toBe(`${'d'.repeat(3975)}…[cut 4025 of 8000 bytes]`);
    expect(storedDescription(long)).toBe(long);
    // The kept text would end in half an emoji: the emoji goes whole, its 4 bytes among those cut.
    expect(storedDescription(`${'d'.repeat(3974)}\u{1F600}${'x'.repeat(100)}`)).toBe(`${'d'.repeat(3974)}…[cut 104 of 4078 bytes]`);
    // Bytes, as a cut detail value counts them.
    expect(storedDescription('é'.repeat(MAX_DESCRIPTION + 1))).toBe(`${'é'.repeat(3975)}…[cut 52 of 8002 bytes]`);
    expect(storedDescription('d'.repeat(MAX_DESCRIPTION))).toBe('d'.repeat(MAX_DESCRIPTION));
    expect(storedDescription('d'.repeat(4 * 1024 * 1024))).toBe(`${'d'.repeat(3969)}…[cut 4190335 of 4194304 bytes]`);
  });

  it('cuts labels once: cleaned labels are kept as they are', () => {
    const once = cleanLabels({ pod: `${'p'.repeat(MAX_LABEL)}\r\nmore`, n: 1 });
    expect(cleanLabels(once)).toBe(once);
  });
});
