import { describe, expect, it } from 'vitest';
import { MAX_DESCRIPTION } from '../../shared/alert/fields.js';
import { fitPayload } from './alert-fit.js';

function payload(o: { description?: number; output?: number; samples?: number; sample?: number }): Buffer {
  return Buffer.from(
    JSON.stringify({
      schema: 'verdict.alert/v1',
      source: 'falco',
      fingerprint: 'f',
      severity: 'high',
      title: 'T',
      description: 'd'.repeat(o.description ?? 10),
      cluster: 'c',
      namespace: 'n',
      count: 1,
      first_seen: '2026-01-01T00:00:00Z',
      last_seen: '2026-01-01T00:00:00Z',
      policies: [],
      rule: 'r',
      labels: {},
      falco: { rule: 'r', priority: 'Error', source: 'syscall', hostname: 'h', output: 'o'.repeat(o.output ?? 10), tags: [], output_fields: {} },
      samples: Array.from({ length: o.samples ?? 0 }, (_, n) => ({ n, pad: 'p'.repeat(o.sample ?? 10) })),
    }),
  );
}

const parse = (b: Buffer) => JSON.parse(b.toString('utf8')) as { description: string; samples: unknown[]; falco: { output: string } };

describe('fitting an alert into a gRPC message', () => {
  it('sends an alert that fits as it is', () => {
    const p = payload({ samples: 2 });
    expect(fitPayload(p, p.length)).toEqual({ payload: p, cut: [], details: [], title: undefined });
  });

  it('cuts the fields the store cuts before the samples, and stops as soon as it fits', () => {
    const p = payload({ description: 100_000, samples: 2, sample: 20_000 });
    const f = fitPayload(p, 50_000);
    expect(f.cut).toEqual(['description']);
    expect(f.title).toBe('T');
    expect(f.payload!.length).toBeLessThanOrEqual(50_000);
    const a = parse(f.payload!);
    expect(a.description.length).toBeLessThanOrEqual(MAX_DESCRIPTION);
    expect(a.description).toMatch(/…\[cut \d+ of \d+ bytes\]$/);
    expect(a.samples).toEqual(parse(p).samples);
  });

  it('then cuts big samples to previews, then sends no samples', () => {
    const p = payload({ description: 100_000, samples: 2, sample: 20_000 });
    const previews = fitPayload(p, 15_000);
    expect(previews.cut).toEqual(['description', 'sample previews']);
    expect(parse(previews.payload!).samples).toEqual([expect.objectContaining({ truncated: true }), expect.objectContaining({ truncated: true })]);
    const none = fitPayload(p, 6_000);
    expect(none.cut).toEqual(['description', 'sample previews', 'samples']);
    expect(parse(none.payload!).samples).toEqual([]);
  });

  it('then cuts the details, which the store keeps whole (a Falco output), before the samples, and gives up only on an alert whose other fields are too big', () => {
    const p = payload({ description: 100_000, output: 60_000, samples: 2, sample: 20_000 });
    const f = fitPayload(p, 50_000);
    expect(f).toMatchObject({ cut: ['description', 'sample previews', 'detail previews'], details: ['falco.output'], title: 'T' });
    expect(f.payload!.length).toBeLessThanOrEqual(50_000);
    expect(parse(f.payload!).falco.output).toMatch(/^o{2048}…\[cut 57952 of 60000 bytes\]$/);
    // The samples' previews fit beside the output's, so they stay.
    expect(parse(f.payload!).samples).toEqual([expect.objectContaining({ truncated: true }), expect.objectContaining({ truncated: true })]);
    const rule = JSON.parse(p.toString()) as { rule: string };
    rule.rule = 'r'.repeat(60_000);
    expect(fitPayload(Buffer.from(JSON.stringify(rule)), 50_000).payload).toBeUndefined();
    expect(fitPayload(Buffer.from('x'.repeat(100)), 50).payload).toBeUndefined();
  });
});
